//! `bootstrap`: the AWS Lambda function (API Gateway HTTP API v2 and REST API v1 events, etcd
//! store). Everything is in `flowpipe_api::lambda`; see the README's "AWS Lambda".

// One invocation at a time per execution environment: a single-threaded runtime starts faster
// and needs no worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    flowpipe_api::lambda::run().await
}
