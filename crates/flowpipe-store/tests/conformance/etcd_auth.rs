//! etcd with authentication enabled: the store logs in with a user and password, keeps working
//! after its token expires (refreshing it), and a wrong password is UNAVAILABLE with a clear
//! message, never a panic or a 500.

use std::time::Duration;

use etcd_client::{Client, Permission};
use flowpipe_core::proto::v1::{CreateFlowRequest, FlowSpec};
use flowpipe_core::{Code, FlowRegistry};
use flowpipe_store::{EtcdConfig, Store, StoreConfig};
use flowpipe_testkit::EtcdCluster;
use flowpipe_testkit::SystemEnvironment;

fn store(endpoints: Vec<String>, user: &str, password: &str) -> Store {
    let mut c = EtcdConfig::new(endpoints);
    c.username = Some(user.into());
    c.password = Some(password.into());
    c.request_timeout = Duration::from_secs(3);
    Store::open(StoreConfig::Etcd(Box::new(c))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_with_token_refresh() {
    // Tokens live one second, so the test sees them expire.
    let cluster = tokio::task::spawn_blocking(|| {
        EtcdCluster::start_with_args(1, &["--auth-token=simple", "--auth-token-ttl=1"])
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    let endpoints = cluster.endpoints();

    // Set up as an operator would: root, then a user limited to /flowpipe/.
    let mut admin = Client::connect(&endpoints, None).await.unwrap();
    admin.user_add("root", "root-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("flowpipe").await.unwrap();
    admin
        .role_grant_permission(
            "flowpipe",
            Permission::read_write("/flowpipe/").with_prefix(),
        )
        .await
        .unwrap();
    admin.user_add("flowpipe", "s3cret", None).await.unwrap();
    admin.user_grant_role("flowpipe", "flowpipe").await.unwrap();
    admin.auth_enable().await.unwrap();

    let flows = FlowRegistry::new(
        store(endpoints.clone(), "flowpipe", "s3cret"),
        SystemEnvironment,
    );
    let create = |name: &str| CreateFlowRequest {
        spec: Some(FlowSpec {
            name: name.into(),
            ..Default::default()
        }),
        validate_only: false,
    };
    flows.create(create("first")).await.unwrap();
    // Let the token expire; the next calls refresh it and go on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(flows.get("first").await.unwrap().version, 1);
    flows.create(create("second")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(flows.list(0, "").await.unwrap().flows.len(), 2);

    let wrong = FlowRegistry::new(store(endpoints, "flowpipe", "wrong"), SystemEnvironment);
    let e = wrong.get("first").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.message().contains("etcd"), "{e}");
    drop(cluster);
}
