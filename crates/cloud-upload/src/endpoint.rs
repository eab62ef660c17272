//! Where a job's bytes go: the endpoint (and OSS region, QingStor zone) it was started with,
//! recorded in its job file, whether it came from the command line, the environment or a config
//! file; and the check that `resume`, `abort` and `status` continue there and nowhere else.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::job::{Exit, Failure, Settings};
use crate::target::Target;

/// The service a job talks to, as its client was configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    /// OSS and QingStor: `scheme://host[:port]`; Box: the API base; Graph: its base; SharePoint
    /// REST: the site.
    pub(crate) url: String,
    /// Box: the upload base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upload_url: Option<String>,
    /// OSS: the region V4 signatures name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    /// QingStor: the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) zone: Option<String>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)?;
        if let Some(u) = &self.upload_url {
            write!(f, " (uploads at {u})")?;
        }
        if let Some(r) = &self.region {
            write!(f, " (region {r})")?;
        }
        if let Some(z) = &self.zone {
            write!(f, " (zone {z})")?;
        }
        Ok(())
    }
}

fn authority(scheme: &str, host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

/// The endpoint a client is configured for.
pub(crate) fn of(backend: &Backend) -> Endpoint {
    match backend {
        Backend::Oss(c) => {
            let c = c.config();
            Endpoint { url: authority(&c.scheme, &c.host, c.port), region: c.region.clone(), ..Endpoint::default() }
        }
        Backend::QingStor(c) => {
            let c = c.config();
            Endpoint { url: authority(&c.protocol, &c.host, c.port), zone: c.zone.clone(), ..Endpoint::default() }
        }
        Backend::Box(c) => Endpoint {
            url: c.config().api_url.clone(),
            upload_url: Some(c.config().upload_url.clone()),
            ..Endpoint::default()
        },
        Backend::Graph(c) => Endpoint { url: c.config().graph_url.clone(), ..Endpoint::default() },
        Backend::Rest(c) => Endpoint { url: c.config().site_url.clone(), ..Endpoint::default() },
    }
}

/// The endpoint, region and zone given on the command line of a command that continues a job.
#[derive(Clone, Debug, Default)]
pub(crate) struct Given {
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) zone: Option<String>,
}

/// One value given now: what it is, its value as the recorded endpoint writes it, and where it
/// came from (`--endpoint`, `OSS_ENDPOINT`…).
struct Value {
    what: &'static str,
    value: String,
    from: &'static str,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The values the command line gives, else the environment, as `put` would take them.
fn given_now(target: &Target, cli: &Given) -> Result<Vec<Value>, Failure> {
    let bad =
        |what: &str, from: &str, e: &dyn fmt::Display| Failure::new(Exit::BadInput, format!("{from}: {what}: {e}"));
    let mut values = Vec::new();
    let mut push = |what, value: String, from| values.push(Value { what, value, from });
    match target {
        Target::Oss { .. } => {
            let endpoint = match &cli.endpoint {
                Some(e) => Some((e.clone(), "--endpoint")),
                None => env("OSS_ENDPOINT").map(|e| (e, "OSS_ENDPOINT")),
            };
            if let Some((e, from)) = endpoint {
                let c = oss_multipart::Config::new(&e, oss_multipart::Credentials::new("", ""))
                    .map_err(|err| bad("endpoint", from, &err))?;
                push("endpoint", authority(&c.scheme, &c.host, c.port), from);
            }
            match (&cli.region, &cli.endpoint) {
                (Some(r), _) => push("region", r.clone(), "--region"),
                (None, None) => {
                    if let Some(r) = env("OSS_REGION") {
                        push("region", r, "OSS_REGION");
                    }
                }
                (None, Some(_)) => {}
            }
        }
        Target::QingStor { .. } => {
            if let Some(e) = &cli.endpoint {
                let c = qingstor_multipart::Config::new(qingstor_multipart::Credentials::new("", ""))
                    .with_endpoint(e)
                    .map_err(|err| bad("endpoint", "--endpoint", &err))?;
                push("endpoint", authority(&c.protocol, &c.host, c.port), "--endpoint");
            } else {
                for (what, var) in
                    [("protocol", "QINGSTOR_PROTOCOL"), ("host", "QINGSTOR_HOST"), ("port", "QINGSTOR_PORT")]
                {
                    if let Some(v) = env(var) {
                        push(what, v, var);
                    }
                }
            }
            match &cli.zone {
                Some(z) => push("zone", z.clone(), "--zone"),
                None => {
                    if let Some(z) = env("QINGSTOR_ZONE") {
                        push("zone", z, "QINGSTOR_ZONE");
                    }
                }
            }
        }
        Target::BoxFolder { .. } | Target::BoxFile { .. } => {
            for (what, var) in [("endpoint", "BOX_API_URL"), ("upload URL", "BOX_UPLOAD_URL")] {
                if let Some(v) = env(var) {
                    push(what, v.trim_end_matches('/').to_owned(), var);
                }
            }
        }
        Target::Graph { .. } => {
            if let Some(v) = env("GRAPH_URL") {
                push("endpoint", v.trim_end_matches('/').to_owned(), "GRAPH_URL");
            }
        }
        Target::SharePointRest { .. } => {
            let site = match &cli.endpoint {
                Some(e) => Some((e.clone(), "--endpoint")),
                None => env("SHAREPOINT_SITE_URL").map(|e| (e, "SHAREPOINT_SITE_URL")),
            };
            if let Some((site, from)) = site {
                push("endpoint", site.trim_end_matches('/').to_owned(), from);
            }
        }
    }
    Ok(values)
}

/// What `recorded` says for `what` (`None`: it says nothing of it).
fn recorded_value(recorded: &Endpoint, what: &str) -> Option<String> {
    let url = url_parts(&recorded.url);
    match what {
        "endpoint" => Some(recorded.url.clone()),
        "upload URL" => recorded.upload_url.clone(),
        "region" => Some(recorded.region.clone().unwrap_or_else(|| "none".into())),
        "zone" => Some(recorded.zone.clone().unwrap_or_else(|| "none".into())),
        "protocol" => url.map(|u| u.0),
        "host" => url.map(|u| u.1),
        "port" => url.map(|u| u.2),
        _ => None,
    }
}

/// `(scheme, host, port)` of `scheme://host[:port]`, the port the scheme's default when absent.
fn url_parts(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => (h, p.to_owned()),
        _ => (rest, if scheme == "https" { "443".into() } else { "80".into() }),
    };
    Some((scheme.to_owned(), host.to_owned(), port))
}

fn mismatch(checkpoint: &std::path::Path, what: &str, recorded: &str, now: &str, from: &str) -> Failure {
    Failure::new(
        Exit::BadInput,
        format!(
            "{}: the upload was started with {what} {recorded}, but {from} gives {now}; refusing to continue it elsewhere (leave {from} out, or give {recorded})",
            checkpoint.display()
        ),
    )
}

/// A client for a job that continues: refused when the command line or the environment names
/// another endpoint, region or zone than the one the job was started with; otherwise pinned to
/// that one, credentials from the environment as always.
pub(crate) fn continue_job(
    target: &Target,
    settings: &Settings,
    recorded: Option<&Endpoint>,
    cli: &Given,
    checkpoint: &std::path::Path,
) -> Result<Backend, Failure> {
    let Some(recorded) = recorded else {
        // A job file of an earlier version, which recorded only what the command line gave.
        let mut settings = settings.clone();
        settings.endpoint = cli.endpoint.clone().or(settings.endpoint);
        settings.region = cli.region.clone().or(settings.region);
        settings.zone = cli.zone.clone().or(settings.zone);
        return Backend::from_env(target, &settings, None);
    };
    for v in given_now(target, cli)? {
        if let Some(was) = recorded_value(recorded, v.what).filter(|was| !was.eq_ignore_ascii_case(&v.value)) {
            return Err(mismatch(checkpoint, v.what, &was, &v.value, v.from));
        }
    }
    let pinned = match target {
        Target::Oss { .. } | Target::QingStor { .. } | Target::SharePointRest { .. } => Settings {
            endpoint: Some(recorded.url.clone()),
            region: recorded.region.clone(),
            zone: recorded.zone.clone(),
            ..settings.clone()
        },
        _ => settings.clone(),
    };
    let backend = Backend::from_env(target, &pinned, Some(recorded))?;
    let now = of(&backend);
    if &now != recorded {
        return Err(mismatch(checkpoint, "endpoint", &recorded.to_string(), &now.to_string(), "this configuration"));
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_with_default_ports() {
        assert_eq!(url_parts("http://127.0.0.1:9000"), Some(("http".into(), "127.0.0.1".into(), "9000".into())));
        assert_eq!(url_parts("https://qingstor.com"), Some(("https".into(), "qingstor.com".into(), "443".into())));
        let recorded =
            Endpoint { url: "https://qingstor.com".into(), zone: Some("pek3b".into()), ..Endpoint::default() };
        assert_eq!(recorded_value(&recorded, "port").as_deref(), Some("443"));
        assert_eq!(recorded.to_string(), "https://qingstor.com (zone pek3b)");
    }
}
