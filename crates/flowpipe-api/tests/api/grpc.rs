//! gRPC: every RPC over a real socket against both stores, the same scenario over REST and gRPC
//! giving identical results, error details, reflection and health.

use flowpipe_api::grpc::v1::flow_service_client::FlowServiceClient;
use flowpipe_api::grpc::v1::schema_registry_service_client::SchemaRegistryServiceClient;
use flowpipe_api::server::Config;
use flowpipe_core::proto::v1::*;
use flowpipe_store::StoreConfig;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use flowpipe_testkit::TestServer;
use flowpipe_testkit::stores::etcd_config;

fn spec(name: &str, threads: u32) -> FlowSpec {
    flowpipe_core::json::decode_flow_spec(
        serde_json::json!({
            "name": name,
            "mode": "STREAMING",
            "queues": [{"name": "events"}],
            "stages": [
                {"name": "source", "type": "kafka", "threads": threads, "outputQueue": "events"},
                {"name": "sink", "type": "s3", "threads": 1, "inputQueue": "events"}
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

async fn client(server: &TestServer) -> FlowServiceClient<Channel> {
    FlowServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
}

async fn every_rpc(store: StoreConfig) {
    let server = TestServer::start(Config::for_tests(store)).await;
    let mut c = client(&server).await;

    let created = c
        .create_flow(CreateFlowRequest {
            spec: Some(spec("orders", 1)),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((created.version, created.latest_version), (1, 1));
    assert_eq!(created.spec.as_ref().unwrap().queues[0].capacity, 128);

    let dry = c
        .create_flow(CreateFlowRequest {
            spec: Some(spec("dry", 1)),
            validate_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.version, 1);

    let updated = c
        .update_flow(UpdateFlowRequest {
            name: "orders".into(),
            spec: Some(spec("", 3)),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);

    let got = c
        .get_flow(GetFlowRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, updated);

    let status = c
        .get_flow_status(GetFlowStatusRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status, FlowStatus::default());

    let rolled = c
        .rollback_flow(RollbackFlowRequest {
            name: "orders".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((rolled.version, rolled.latest_version), (1, 2));

    let versions = c
        .list_flow_versions(ListFlowVersionsRequest {
            name: "orders".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.versions.len(), 1);
    assert!(versions.versions[0].active);
    assert!(!versions.next_page_token.is_empty());

    let v2 = c
        .get_flow_version(GetFlowVersionRequest {
            name: "orders".into(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.spec.unwrap().stages[0].threads, 3);
    assert_eq!(v2.status, None);

    let list = c
        .list_flows(ListFlowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.flows.len(), 1);
    assert_eq!(list.flows[0].version, 1);

    c.delete_flow(DeleteFlowRequest {
        name: "orders".into(),
    })
    .await
    .unwrap();
    let e = c
        .get_flow(GetFlowRequest {
            name: "orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "flow \"orders\" not found");
    let info = e.get_error_details().error_info().cloned().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("FLOW_NOT_FOUND", "flowpipe.io")
    );

    // Schemas.
    let mut s = SchemaRegistryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let def = s
        .create_schema(CreateSchemaRequest {
            schema: Some(SchemaDefinition {
                schema_id: "orders".into(),
                version: 0,
                format: InMemorySchemaFormat::Arrow as i32,
                raw_schema: vec![1, 2, 3],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(def.version, 1);
    let got = s
        .get_schema(GetSchemaRequest {
            schema_id: "orders".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, def);
    let all = s
        .list_schema_versions(ListSchemaVersionsRequest {
            schema_id: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.schemas, vec![def]);
    s.delete_schema(DeleteSchemaRequest {
        schema_id: "orders".into(),
    })
    .await
    .unwrap();
    server.stop().await;
}

async fn errors_carry_codes_and_details(store: StoreConfig) {
    let server = TestServer::start(Config::for_tests(store)).await;
    let mut c = client(&server).await;
    let mut bad = spec("Bad", 0);
    bad.stages[1].input_queue = Some("nope".into());
    let e = c
        .create_flow(CreateFlowRequest {
            spec: Some(bad),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let d = e.get_error_details();
    let fields: Vec<_> = d
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(
        fields,
        ["name", "stages[0].threads", "stages[1].input_queue"]
    );
    assert_eq!(d.error_info().unwrap().reason, "INVALID_FLOW_SPEC");

    c.create_flow(CreateFlowRequest {
        spec: Some(spec("a", 1)),
        validate_only: false,
    })
    .await
    .unwrap();
    let e = c
        .create_flow(CreateFlowRequest {
            spec: Some(spec("a", 2)),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let mut stale = spec("a", 5);
    stale.version = 9;
    let e = c
        .update_flow(UpdateFlowRequest {
            name: "a".into(),
            spec: Some(stale),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert_eq!(
        e.get_error_details().error_info().unwrap().reason,
        "VERSION_MISMATCH"
    );
    let e = c
        .rollback_flow(RollbackFlowRequest {
            name: "a".into(),
            version: 42,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .list_flows(ListFlowsRequest {
            page_size: -5,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A spec over 1 MiB is RESOURCE_EXHAUSTED.
    let mut huge = spec("huge", 1);
    huge.labels.insert("x".into(), "y".repeat(1024 * 1024 + 1));
    let e = c
        .create_flow(CreateFlowRequest {
            spec: Some(huge),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    // A message too large to even decode gets the same code and details.
    let mut absurd = spec("absurd", 1);
    absurd
        .labels
        .insert("x".into(), "y".repeat(3 * 1024 * 1024));
    let e = c
        .create_flow(CreateFlowRequest {
            spec: Some(absurd),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(
        e.get_error_details().error_info().unwrap().reason,
        "REQUEST_TOO_LARGE"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_on_etcd() {
    every_rpc(etcd_config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    every_rpc(StoreConfig::Embedded(dir.path().join("f.redb"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_etcd() {
    errors_carry_codes_and_details(etcd_config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_the_embedded_store() {
    errors_carry_codes_and_details(StoreConfig::InMemory).await;
}

/// Erases what differs between two independent runs (ids and times).
fn normalized(mut f: Flow) -> Flow {
    f.uid = String::new();
    f.create_time = None;
    f.update_time = None;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scenario_over_rest_and_grpc_gives_identical_results() {
    let rest_server = TestServer::start(Config::for_tests(etcd_config())).await;
    let grpc_server = TestServer::start(Config::for_tests(etcd_config())).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", rest_server.http);
    let mut c = client(&grpc_server).await;

    let rest = |method: reqwest::Method, path: &str, body: Option<FlowSpec>| {
        let req = http.request(method, format!("{base}{path}"));
        let req = match body {
            Some(s) => req.json(&s),
            None => req,
        };
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let as_flow = |v: serde_json::Value| normalized(serde_json::from_value::<Flow>(v).unwrap());

    // create
    let (s, r) = rest(reqwest::Method::POST, "/v1/flows", Some(spec("same", 1))).await;
    assert_eq!(s, 200);
    let g = c
        .create_flow(CreateFlowRequest {
            spec: Some(spec("same", 1)),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(as_flow(r), normalized(g));
    // update
    let (_, r) = rest(
        reqwest::Method::PUT,
        "/v1/flows/same",
        Some(spec("same", 2)),
    )
    .await;
    let g = c
        .update_flow(UpdateFlowRequest {
            name: "same".into(),
            spec: Some(spec("same", 2)),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(as_flow(r), normalized(g));
    // rollback
    let (_, r) = rest(reqwest::Method::POST, "/v1/flows/same/rollback/1", None).await;
    let g = c
        .rollback_flow(RollbackFlowRequest {
            name: "same".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(as_flow(r), normalized(g));
    // list
    let (_, r) = rest(reqwest::Method::GET, "/v1/flows", None).await;
    let g = c
        .list_flows(ListFlowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serde_json::from_value::<ListFlowsResponse>(r).unwrap(), g);
    // the same error, code for code and message for message
    let (s, r) = rest(reqwest::Method::POST, "/v1/flows/same/rollback/9", None).await;
    let e = c
        .rollback_flow(RollbackFlowRequest {
            name: "same".into(),
            version: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(s, 404);
    assert_eq!(r["code"], e.code() as i32);
    assert_eq!(r["message"], e.message());
    // delete
    let (s, r) = rest(reqwest::Method::DELETE, "/v1/flows/same", None).await;
    assert_eq!((s, r), (200, serde_json::json!({})));
    c.delete_flow(DeleteFlowRequest {
        name: "same".into(),
    })
    .await
    .unwrap();
    rest_server.stop().await;
    grpc_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_and_health_answers() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(Config::for_tests(StoreConfig::InMemory)).await;
    let url = format!("http://{}", server.grpc);
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut r = ServerReflectionClient::new(channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response {resp:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "flowpipe.v1.FlowService",
        "flowpipe.v1.SchemaRegistryService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    // The service's descriptor resolves, with its imports (what grpcurl needs to call it).
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "flowpipe.v1.FlowService".into(),
        )),
    };
    let mut stream = r
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        resp.message_response,
        Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
    ));

    let mut h = HealthClient::new(channel);
    let overall = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, 1, "SERVING");
    // The API service turns SERVING once the first store probe answers (it is NOT_SERVING,
    // never unknown, before that).
    let mut status = 0;
    for _ in 0..100 {
        status = h
            .check(HealthCheckRequest {
                service: "flowpipe.v1.FlowService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == 1 {
            break;
        }
        assert_eq!(status, 2, "NOT_SERVING until the first probe");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 1, "SERVING while the store answers");
    server.stop().await;
}
