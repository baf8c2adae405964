//! The etcd settings in a Secrets Manager secret (`FLOW_ETCD_SECRET_ARN`), read with the AWS SDK
//! at the first invocation that needs them. Messages name the secret, never the account it is in
//! or the values it holds.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use super::{SECRET_TIMEOUT, SECRET_VAR};

/// The secret's name for messages: what follows `:secret:` in an ARN (ARNs also carry the
/// account id, which API clients have no business seeing).
pub(super) fn secret_label(id: &str) -> &str {
    id.split_once(":secret:").map_or(id, |(_, name)| name)
}

/// An AWS config loader over the HTTPS client the function uses (rustls + ring, so no second
/// crypto library, aws-lc, is linked), with the SDK's whole default chain: for tests and tools
/// that talk to Secrets Manager as the function does. The function itself builds its client from
/// the Lambda environment alone ([`secrets_client_from_env`]).
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client())
}

fn https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The Secrets Manager client of the function, from what Lambda puts in the environment:
/// the region (`AWS_REGION`, else `AWS_DEFAULT_REGION`), the role's credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and an endpoint override
/// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, else `AWS_ENDPOINT_URL`, as the SDK reads them). No network
/// I/O. The SDK's default chain would also look for profiles, SSO, web identity (STS) and
/// instance metadata, which a Lambda function never uses and which took a tenth of its binary.
pub fn secrets_client_from_env() -> aws_sdk_secretsmanager::Client {
    secrets_client_from(|name| std::env::var(name).ok())
}

fn secrets_client_from(var: impl Fn(&str) -> Option<String>) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Builder, Region};
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let mut config = Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client())
        .credentials_provider(
            aws_config::environment::credentials::EnvironmentVariableCredentialsProvider::new(),
        );
    if let Some(region) = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
        config = config.region(Region::new(region));
    }
    if let Some(url) = get("AWS_ENDPOINT_URL_SECRETS_MANAGER").or_else(|| get("AWS_ENDPOINT_URL")) {
        config = config.endpoint_url(url);
    }
    aws_sdk_secretsmanager::Client::from_conf(config.build())
}

/// The secret's text, or a one-line reason it cannot be had.
pub(super) async fn fetch_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, String> {
    let what = format!("secret {:?} ({SECRET_VAR})", secret_label(id));
    let call = client.get_secret_value().secret_id(id).send();
    let out = match tokio::time::timeout(SECRET_TIMEOUT, call).await {
        Err(_) => {
            return Err(format!(
                "Secrets Manager did not answer within {SECRET_TIMEOUT:?} reading {what}; a \
                 function in a VPC needs a Secrets Manager VPC endpoint or a NAT gateway"
            ));
        }
        Ok(Err(e)) => return Err(describe_secret_error(&e, &what)),
        Ok(Ok(out)) => out,
    };
    if let Some(s) = out.secret_string() {
        return Ok(s.to_string());
    }
    match out.secret_binary() {
        Some(b) => String::from_utf8(b.as_ref().to_vec())
            .map_err(|_| format!("{what} is binary, not JSON text")),
        None => Err(format!("{what} has no value")),
    }
}

fn describe_secret_error(e: &SdkError<GetSecretValueError>, what: &str) -> String {
    match e.as_service_error() {
        Some(GetSecretValueError::ResourceNotFoundException(_)) => {
            format!("{what} does not exist (or has no current version)")
        }
        Some(GetSecretValueError::DecryptionFailure(_)) => {
            format!("{what} cannot be decrypted: the function's role needs kms:Decrypt on its key")
        }
        Some(se) if se.code() == Some("AccessDeniedException") => format!(
            "the function's role may not read {what}: it needs secretsmanager:GetSecretValue on it"
        ),
        Some(se) => format!(
            "Secrets Manager refused to read {what}: {}",
            se.message().unwrap_or("no message")
        ),
        None => format!(
            "cannot read {what} from Secrets Manager: {}",
            DisplayErrorContext(e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::test_env;

    #[test]
    fn the_client_comes_from_the_lambda_environment() {
        let c = secrets_client_from(test_env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
        ]));
        assert_eq!(c.config().region().unwrap().as_ref(), "eu-west-1");
        let c = secrets_client_from(test_env(&[("AWS_DEFAULT_REGION", "us-east-2")]));
        assert_eq!(c.config().region().unwrap().as_ref(), "us-east-2");
        assert!(
            secrets_client_from(test_env(&[]))
                .config()
                .region()
                .is_none()
        );
    }

    #[test]
    fn secret_labels_hide_the_account() {
        assert_eq!(
            secret_label(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:flowpipe/etcd-AbCdEf"
            ),
            "flowpipe/etcd-AbCdEf"
        );
        assert_eq!(secret_label("flowpipe/etcd"), "flowpipe/etcd");
    }
}
