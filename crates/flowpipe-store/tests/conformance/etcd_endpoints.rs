//! An etcd endpoint where something else answers: nothing (connection refused), an HTTP/2 service
//! that is not gRPC (another service on the port, a proxy's error page), or a gRPC server that
//! is not etcd. Each is UNAVAILABLE saying what answered, so readiness fails and clients get a
//! 503, never an INTERNAL 500 carrying a decoder's words.

use std::time::Duration;

use axum::http::StatusCode;
use flowpipe_core::KvError;
use flowpipe_store::{EtcdConfig, Store, StoreConfig};
use flowpipe_testkit::RefusedPort;
use flowpipe_testkit::otlp::Receiver;

fn store(endpoint: String) -> Store {
    let mut c = EtcdConfig::new(vec![endpoint]);
    c.connect_timeout = Duration::from_millis(500);
    c.request_timeout = Duration::from_secs(2);
    Store::open(StoreConfig::Etcd(Box::new(c))).unwrap()
}

/// The error a one-key read (the readiness probe) gets from `endpoint`.
async fn ping_error(endpoint: String) -> String {
    match store(endpoint).ping().await {
        Err(KvError::Unavailable(m)) => m,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// An HTTP server (HTTP/1 and HTTP/2 with prior knowledge, as axum serves) answering every
/// request with `status` and `body`.
async fn http_server(status: StatusCode, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || async move { (status, body) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let nowhere = RefusedPort::new();
    let m = ping_error(nowhere.url()).await;
    assert!(m.starts_with("etcd is unavailable: "), "{m}");
}

#[tokio::test]
async fn an_http_answer_that_is_not_grpc_is_unavailable_with_its_status() {
    // With a body (tonic tries to decode it as gRPC frames), as another API's 404 page.
    let url = http_server(StatusCode::NOT_FOUND, r#"{"code":5,"message":"no route"}"#).await;
    let m = ping_error(url).await;
    assert_eq!(
        m,
        "etcd is unavailable: the endpoint answered HTTP 404 Not Found, not etcd's gRPC \
         (is it an etcd client URL?)"
    );
    // Without a body (tonic maps the HTTP status to a code).
    let url = http_server(StatusCode::NOT_FOUND, "").await;
    let m = ping_error(url).await;
    assert_eq!(
        m,
        "etcd is unavailable: the endpoint answered HTTP 404, not etcd's gRPC \
         (is it an etcd client URL?)"
    );
    // A proxy in front of etcd that says its upstream is down: the same, with its status.
    let url = http_server(StatusCode::BAD_GATEWAY, "").await;
    let m = ping_error(url).await;
    assert!(m.contains("answered HTTP 502"), "{m}");
}

#[tokio::test]
async fn a_grpc_server_that_is_not_etcd_is_unavailable() {
    // An OTLP collector: gRPC, but without etcd's services.
    let collector = Receiver::start();
    let m = ping_error(format!("http://{}", collector.addr)).await;
    assert!(
        m.starts_with("etcd is unavailable: the endpoint does not serve etcd's v3 API"),
        "{m}"
    );
}
