//! API-key authentication and TLS on both transports.

use flowpipe_api::ApiKey;
use flowpipe_api::grpc::v1::flow_service_client::FlowServiceClient;
use flowpipe_api::server::Config;
use flowpipe_api::server::TlsIdentity;
use flowpipe_core::kv::Kv;
use flowpipe_core::proto::v1::{GetFlowRequest, ListFlowsRequest};
use flowpipe_store::StoreConfig;
use tonic::Code;
use tonic::metadata::MetadataValue;

use flowpipe_store::{RoundTrips, Store};
use flowpipe_testkit::TestServer;
use flowpipe_testkit::stores::{counting, etcd_config};
use std::sync::Arc;

const KEY: &str = "k3y-with-enough-entropy-4b8f";

fn with_key(store: StoreConfig) -> Config {
    let mut c = Config::for_tests(store);
    c.api_key = ApiKey::new(KEY);
    c
}

/// A server on `config`, counting its store's round trips, once its start-up work is done: the
/// name index is built beforehand, so the server's one check of it at start-up is all it reads
/// by itself.
async fn counted(config: Config) -> (TestServer, Arc<RoundTrips>) {
    let store = Store::open(config.store.clone()).unwrap();
    flowpipe_core::FlowRegistry::new(store.clone(), flowpipe_testkit::SystemEnvironment)
        .ensure_index()
        .await
        .unwrap();
    let (store, trips) = counting(store);
    let server = TestServer::start_on(config, store).await;
    for _ in 0..1000 {
        if trips.total() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(trips.total(), 1, "the start-up check of the name index");
    (server, trips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_requires_the_api_key_and_health_stays_open() {
    let (server, trips) = counted(with_key(etcd_config())).await;
    let base = format!("http://{}", server.http);
    let http = reqwest::Client::new();
    let before = trips.total();

    for auth in [None, Some("Bearer wrong"), Some(KEY), Some("Basic abc")] {
        let mut req = http.get(format!("{base}/v1/flows"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"flowpipe\""
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], 16);
        assert_eq!(body["details"][0]["reason"], "UNAUTHENTICATED");
    }
    let resp = http
        .post(format!("{base}/v1/flows"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        trips.total(),
        before,
        "no unauthenticated request reached the store"
    );

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = http
            .get(format!("{base}/v1/flows"))
            .header("authorization", format!("{scheme} {KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    for open in ["/healthz", "/readyz"] {
        let resp = http.get(format!("{base}{open}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{open}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requires_the_api_key_and_health_stays_open() {
    let (server, trips) = counted(with_key(StoreConfig::InMemory)).await;
    let url = format!("http://{}", server.grpc);
    let mut c = FlowServiceClient::connect(url.clone()).await.unwrap();
    let before = trips.total();

    let e = c.list_flows(ListFlowsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    for bad in ["Bearer nope", KEY] {
        let mut req = tonic::Request::new(GetFlowRequest { name: "x".into() });
        req.metadata_mut()
            .insert("authorization", MetadataValue::try_from(bad).unwrap());
        assert_eq!(
            c.get_flow(req).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    assert_eq!(trips.total(), before);

    let mut req = tonic::Request::new(ListFlowsRequest::default());
    req.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("bearer {KEY}")).unwrap(),
    );
    c.list_flows(req).await.unwrap();

    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    h.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    })
    .await
    .unwrap();
    server.stop().await;
}

#[test]
fn the_key_never_appears_in_debug_output() {
    let c = with_key(StoreConfig::InMemory);
    assert!(!format!("{c:?}").contains(KEY));
}

/// A server certificate for localhost/127.0.0.1 and its key, as PEM.
pub(crate) struct TlsFiles {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
}

impl TlsFiles {
    fn identity(self) -> Result<TlsIdentity, String> {
        TlsIdentity::from_pem(self.cert_pem, self.key_pem)
    }
}

/// A gRPC channel to `localhost:port` over TLS, trusting only `ca` (PEM), as `test_pki` issues.
pub(crate) async fn grpc_tls_channel(ca: &str, port: u16) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    tonic::transport::Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it, as PEM.
pub(crate) fn test_pki() -> (String, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        TlsFiles {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_with_a_test_ca() {
    let (ca, files) = test_pki();
    let identity = files.identity().unwrap();
    let mut config = Config::for_tests(StoreConfig::InMemory);
    config.http_tls = Some(identity.clone());
    config.grpc_tls = Some(identity);
    let server = TestServer::start(config).await;

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://localhost:{}/v1/flows", server.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Plain HTTP to the TLS port does not get an answer from the API.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/flows", server.http.port()))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // A client that does not trust the CA is refused.
    let untrusting = reqwest::Client::new()
        .get(format!("https://localhost:{}/healthz", server.http.port()))
        .send()
        .await;
    assert!(untrusting.is_err());

    FlowServiceClient::new(grpc_tls_channel(&ca, server.grpc.port()).await)
        .list_flows(ListFlowsRequest::default())
        .await
        .unwrap();
    server.stop().await;
}

#[test]
fn tls_config_rejects_a_key_that_is_not_the_certificates() {
    let (_, a) = test_pki();
    let (_, b) = test_pki();
    let mixed = TlsFiles {
        cert_pem: a.cert_pem,
        key_pem: b.key_pem,
    };
    assert!(mixed.identity().is_err());
    let garbage = TlsFiles {
        cert_pem: b"not pem".to_vec(),
        key_pem: b"not pem".to_vec(),
    };
    assert!(garbage.identity().is_err());
}

#[tokio::test]
async fn unauthenticated_requests_do_not_touch_the_store() {
    // The store counter itself works (guards the assertions above against a dead counter).
    let (store, trips) = counting(Store::open(StoreConfig::InMemory).unwrap());
    let before = trips.total();
    store
        .range(flowpipe_core::kv::RangeRequest::key("/x"))
        .await
        .unwrap();
    assert_eq!(trips.total(), before + 1);
}
