//! The gRPC surface: `flowpipe.v1.FlowService` and `SchemaRegistryService` over the same core as
//! REST, plus the standard health service and server reflection (so `grpcurl` works without the
//! .proto files). Errors become `tonic::Status` through `handler::error`, once.

use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::proto::v1::flow_service_server::{FlowService, FlowServiceServer};
use crate::proto::v1::schema_registry_service_server::{
    SchemaRegistryService, SchemaRegistryServiceServer,
};
use crate::proto::v1::*;

use super::state::AppState;

/// Largest request message decoded: a 1 MiB spec (the core's limit) plus the request around it.
/// Anything larger is refused before it is decoded (a small message can decode into a large
/// tree), as RESOURCE_EXHAUSTED like every other too-large request (contract B.5).
pub const MAX_MESSAGE_BYTES: usize = crate::core::flows::MAX_SPEC_BYTES + 64 * 1024;

/// Both API services over one state.
#[derive(Clone)]
pub struct GrpcApi {
    state: AppState,
}

impl GrpcApi {
    pub fn new(state: AppState) -> Self {
        GrpcApi { state }
    }
}

/// Checks `authorization` metadata when an API key is configured.
#[derive(Clone)]
pub struct AuthInterceptor {
    state: AppState,
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(key) = self.state.api_key() {
            let value = req.metadata().get("authorization").map(|v| v.as_bytes());
            key.check(value)?;
        }
        Ok(req)
    }
}

type Authed<S> = InterceptedService<TooLargeIsResourceExhausted<S>, AuthInterceptor>;

/// Answers tonic's own "message too large" (OUT_OF_RANGE, raised while decoding, before any of
/// our code runs) as RESOURCE_EXHAUSTED with the contract's details. The API itself never uses
/// OUT_OF_RANGE, so that code can only come from the decoder.
#[derive(Clone)]
pub struct TooLargeIsResourceExhausted<S> {
    inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService
    for TooLargeIsResourceExhausted<S>
{
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for TooLargeIsResourceExhausted<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let response = self.inner.call(req);
        Box::pin(async move {
            let resp = response.await?;
            let out_of_range = resp
                .headers()
                .get("grpc-status")
                .is_some_and(|s| s.as_bytes() == b"11");
            if !out_of_range {
                return Ok(resp);
            }
            let e = crate::core::Error::TooLarge(
                crate::core::Detail::new(
                    "REQUEST_TOO_LARGE",
                    format!("the request message is larger than {MAX_MESSAGE_BYTES} bytes"),
                )
                .with("limit", MAX_MESSAGE_BYTES),
            );
            Ok(Status::from(e).into_http())
        })
    }
}

impl GrpcApi {
    /// The two API services, behind authentication.
    pub fn services(
        self,
    ) -> (
        Authed<FlowServiceServer<GrpcApi>>,
        Authed<SchemaRegistryServiceServer<GrpcApi>>,
    ) {
        let auth = AuthInterceptor {
            state: self.state.clone(),
        };
        let flows =
            FlowServiceServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let schemas =
            SchemaRegistryServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES);
        (
            InterceptedService::new(TooLargeIsResourceExhausted { inner: flows }, auth.clone()),
            InterceptedService::new(TooLargeIsResourceExhausted { inner: schemas }, auth),
        )
    }
}

/// The reflection services (v1 and v1alpha, for older grpcurl), listing our services and health.
pub fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Our own descriptor set is built into the binary; failing to load it is a build bug.
    let v1 = builder()
        .build_v1()
        .expect("embedded descriptor set is valid");
    let v1alpha = builder()
        .build_v1alpha()
        .expect("embedded descriptor set is valid");
    (v1, v1alpha)
}

fn reply<T>(r: crate::core::Result<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl FlowService for GrpcApi {
    async fn create_flow(&self, req: Request<CreateFlowRequest>) -> Result<Response<Flow>, Status> {
        reply(self.state.flows().create(req.into_inner()).await)
    }

    async fn update_flow(&self, req: Request<UpdateFlowRequest>) -> Result<Response<Flow>, Status> {
        reply(self.state.flows().update(req.into_inner(), None).await)
    }

    async fn delete_flow(&self, req: Request<DeleteFlowRequest>) -> Result<Response<()>, Status> {
        reply(self.state.flows().delete(&req.into_inner().name).await)
    }

    async fn get_flow(&self, req: Request<GetFlowRequest>) -> Result<Response<Flow>, Status> {
        reply(self.state.flows().get(&req.into_inner().name).await)
    }

    async fn list_flows(
        &self,
        req: Request<ListFlowsRequest>,
    ) -> Result<Response<ListFlowsResponse>, Status> {
        let r = req.into_inner();
        reply(self.state.flows().list(r.page_size, &r.page_token).await)
    }

    async fn get_flow_status(
        &self,
        req: Request<GetFlowStatusRequest>,
    ) -> Result<Response<FlowStatus>, Status> {
        reply(self.state.flows().status(&req.into_inner().name).await)
    }

    async fn rollback_flow(
        &self,
        req: Request<RollbackFlowRequest>,
    ) -> Result<Response<Flow>, Status> {
        let r = req.into_inner();
        reply(self.state.flows().rollback(&r.name, r.version).await)
    }

    async fn list_flow_versions(
        &self,
        req: Request<ListFlowVersionsRequest>,
    ) -> Result<Response<ListFlowVersionsResponse>, Status> {
        let r = req.into_inner();
        reply(
            self.state
                .flows()
                .list_versions(&r.name, r.page_size, &r.page_token)
                .await,
        )
    }

    async fn get_flow_version(
        &self,
        req: Request<GetFlowVersionRequest>,
    ) -> Result<Response<Flow>, Status> {
        let r = req.into_inner();
        reply(
            self.state
                .flows()
                .get_version(&r.name, r.version)
                .await
                .map(|(flow, _active)| flow),
        )
    }
}

#[tonic::async_trait]
impl SchemaRegistryService for GrpcApi {
    async fn create_schema(
        &self,
        req: Request<CreateSchemaRequest>,
    ) -> Result<Response<SchemaDefinition>, Status> {
        reply(self.state.schemas().create(req.into_inner().schema).await)
    }

    async fn get_schema(
        &self,
        req: Request<GetSchemaRequest>,
    ) -> Result<Response<SchemaDefinition>, Status> {
        let r = req.into_inner();
        reply(self.state.schemas().get(&r.schema_id, r.version).await)
    }

    async fn list_schema_versions(
        &self,
        req: Request<ListSchemaVersionsRequest>,
    ) -> Result<Response<ListSchemaVersionsResponse>, Status> {
        reply(
            self.state
                .schemas()
                .list_versions(&req.into_inner().schema_id)
                .await,
        )
    }

    async fn delete_schema(
        &self,
        req: Request<DeleteSchemaRequest>,
    ) -> Result<Response<()>, Status> {
        reply(
            self.state
                .schemas()
                .delete(&req.into_inner().schema_id)
                .await,
        )
    }
}
