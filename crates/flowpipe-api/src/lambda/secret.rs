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

/// The AWS config loader the function uses: the SDK's default chain (credentials and region
/// from the Lambda environment, `AWS_ENDPOINT_URL` honoured) over a rustls + ring HTTPS client,
/// so no second crypto library (aws-lc) is linked. Loading it does no network I/O in Lambda,
/// where the region and credentials are environment variables.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http)
}

pub(super) async fn default_secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws_config_loader().load().await)
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
