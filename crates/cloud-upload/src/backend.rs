//! Vendor clients from the environment and the command line's settings, pinned to the endpoint
//! a job was started with when it continues.

use crate::endpoint::Endpoint;
use crate::job::{Exit, Failure, Settings};
use crate::target::Target;

/// A vendor client for a target.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Oss(oss_multipart::Client),
    QingStor(qingstor_multipart::Client),
    Box(box_chunked::Client),
    Graph(sharepoint_resumable::Client),
    Rest(sharepoint_resumable::RestClient),
}

pub(crate) fn config_error(e: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::BadInput, e.to_string())
}

impl Backend {
    /// A client from the vendor's usual environment variables and config files, with the
    /// command line's settings on top, and Box's and Graph's URLs those of `pin` when given (a
    /// job continuing where it started; the other vendors' are in the settings).
    pub(crate) fn from_env(target: &Target, s: &Settings, pin: Option<&Endpoint>) -> Result<Self, Failure> {
        match target {
            Target::Oss { .. } => {
                let mut config = match &s.endpoint {
                    Some(endpoint) => {
                        let var = |n: &str| std::env::var(n).map_err(|_| config_error(format!("{n} is not set")));
                        let mut credentials =
                            oss_multipart::Credentials::new(var("OSS_ACCESS_KEY_ID")?, var("OSS_ACCESS_KEY_SECRET")?);
                        if let Ok(token) = std::env::var("OSS_SESSION_TOKEN") {
                            credentials = credentials.with_security_token(token);
                        }
                        oss_multipart::Config::new(endpoint, credentials).map_err(config_error)?
                    }
                    None => oss_multipart::Config::from_env().map_err(config_error)?,
                };
                // The region of the command line, else of the environment (as without --endpoint).
                let env_region = std::env::var("OSS_REGION").ok().filter(|r| !r.is_empty());
                if let Some(r) = s.region.clone().or(if s.endpoint.is_some() { env_region } else { None }) {
                    config = config.with_region(r);
                }
                match s.signature_version.as_deref() {
                    None | Some("v4" | "V4") => {}
                    Some("v1" | "V1") => config = config.with_signature_version(oss_multipart::SignatureVersion::V1),
                    Some(other) => return Err(config_error(format!("--signature-version {other:?}: v1 or v4"))),
                }
                oss_multipart::Client::new(config).map(Backend::Oss).map_err(config_error)
            }
            Target::QingStor { .. } => {
                let mut config = qingstor_multipart::Config::load().map_err(config_error)?;
                if let Some(endpoint) = &s.endpoint {
                    config = config.with_endpoint(endpoint).map_err(config_error)?;
                }
                if let Some(zone) = &s.zone {
                    config = config.with_zone(zone.clone());
                }
                qingstor_multipart::Client::new(config).map(Backend::QingStor).map_err(config_error)
            }
            Target::BoxFolder { .. } | Target::BoxFile { .. } => {
                let mut config = box_chunked::Config::from_env().map_err(config_error)?;
                if let Some(pin) = pin {
                    let (upload, oauth) = (config.upload_url.clone(), config.oauth_url.clone());
                    let upload = pin.upload_url.as_deref().unwrap_or(&upload);
                    config = config.with_urls(&pin.url, upload, &oauth).map_err(config_error)?;
                }
                box_chunked::Client::new(config).map(Backend::Box).map_err(config_error)
            }
            Target::Graph { .. } => {
                let mut config = sharepoint_resumable::Config::from_env().map_err(config_error)?;
                if let Some(pin) = pin {
                    let login = config.login_url.clone();
                    config = config.with_urls(&pin.url, &login).map_err(config_error)?;
                }
                sharepoint_resumable::Client::new(config).map(Backend::Graph).map_err(config_error)
            }
            Target::SharePointRest { .. } => {
                let config = match &s.endpoint {
                    Some(site) => sharepoint_resumable::RestConfig::from_env_for_site(site),
                    None => sharepoint_resumable::RestConfig::from_env(),
                }
                .map_err(config_error)?;
                sharepoint_resumable::RestClient::new(config).map(Backend::Rest).map_err(config_error)
            }
        }
    }
}
