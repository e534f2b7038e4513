//! Where each EMCO service listens, read from upstream emcoctl's config file (`--config`, default `$HOME/.emco.yaml`).
//!
//! The file has one section per service (`orchestrator`, `clm`, `ncm`, ... each with `host`, `port` and optionally
//! `statusPort`) and an optional `ingress` section that, when complete, sends every request to one address.
//! Keys are matched without regard to case, as upstream's config library does, and a port may be written as a
//! number or a numeric string.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The EMCO services a resource URL can be routed to, named as in upstream's config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Orchestrator,
    Clm,
    Ncm,
    Dcm,
    Rsync,
    OvnAction,
    Gac,
    Dtc,
    HpaPlacement,
    Sfc,
    SfcClient,
    WorkflowMgr,
    Tac,
    CaCert,
    Policy,
}

impl Service {
    pub const ALL: [Service; 15] = [
        Service::Orchestrator,
        Service::Clm,
        Service::Ncm,
        Service::Dcm,
        Service::Rsync,
        Service::OvnAction,
        Service::Gac,
        Service::Dtc,
        Service::HpaPlacement,
        Service::Sfc,
        Service::SfcClient,
        Service::WorkflowMgr,
        Service::Tac,
        Service::CaCert,
        Service::Policy,
    ];

    /// The section name in the config file (compared case-insensitively).
    pub fn config_key(self) -> &'static str {
        match self {
            Service::Orchestrator => "orchestrator",
            Service::Clm => "clm",
            Service::Ncm => "ncm",
            Service::Dcm => "dcm",
            Service::Rsync => "rsync",
            Service::OvnAction => "ovnaction",
            Service::Gac => "gac",
            Service::Dtc => "dtc",
            Service::HpaPlacement => "hpaplacement",
            Service::Sfc => "sfc",
            Service::SfcClient => "sfcclient",
            Service::WorkflowMgr => "workflowmgr",
            Service::Tac => "tac",
            Service::CaCert => "cacert",
            Service::Policy => "policy",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_key())
    }
}

/// One service's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub status_port: Option<u16>,
}

impl Endpoint {
    fn new(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            status_port: None,
        }
    }

    /// `http://host:port/v2`, with IPv6 hosts bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("http://[{}]:{}/v2", self.host, self.port)
        } else {
            format!("http://{}:{}/v2", self.host, self.port)
        }
    }
}

/// Where the configuration came from, for the "Using config file" notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file: every service at `localhost:9015`, where EMCO-rs serves the whole API.
    Defaults,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no {service} information in config file {path} (add a `{service}:` section with host and port, or an `ingress:` section)"
    )]
    MissingService { service: Service, path: PathBuf },
}

/// The resolved configuration: an ingress address or per-service addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub source: ConfigSource,
    pub ingress: Option<Endpoint>,
    pub services: BTreeMap<Service, Endpoint>,
}

/// The port EMCO-rs serves its whole REST API on.
pub const DEFAULT_PORT: u16 = 9015;

impl Config {
    /// Every service on `localhost:9015`: what `emco serve` offers by default.
    pub fn defaults() -> Config {
        let services = Service::ALL
            .iter()
            .map(|service| (*service, Endpoint::new("localhost", DEFAULT_PORT)))
            .collect();
        Config {
            source: ConfigSource::Defaults,
            ingress: None,
            services,
        }
    }

    /// Reads `explicit` if given (it must exist), otherwise `$HOME/.emco.{json,yaml,yml}` if present, otherwise
    /// [`Config::defaults`].
    pub fn load(explicit: Option<&Path>, home: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            return Config::from_file(path);
        }
        if let Some(home) = home {
            for name in [".emco.json", ".emco.yaml", ".emco.yml"] {
                let candidate = home.join(name);
                if candidate.is_file() {
                    return Config::from_file(&candidate);
                }
            }
        }
        Ok(Config::defaults())
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path)
    }

    /// Parses the config file text; `path` only names it in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|err| ConfigError::Parse {
                path: path.to_path_buf(),
                message: err.without_snippet().to_string(),
            })?;
        let root = match documents.into_iter().next() {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: "expected a mapping of service sections".to_string(),
                });
            }
        };
        let sections: BTreeMap<String, Value> = root
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut services = BTreeMap::new();
        for service in Service::ALL {
            if let Some(section) = sections.get(service.config_key()) {
                let endpoint = parse_endpoint(section)
                    .map_err(|m| invalid(format!("{}: {m}", service.config_key())))?;
                if let Some(endpoint) = endpoint {
                    services.insert(service, endpoint);
                }
            }
        }
        let ingress = match sections.get("ingress") {
            Some(section) => {
                parse_endpoint(section).map_err(|m| invalid(format!("ingress: {m}")))?
            }
            None => None,
        };
        Ok(Config {
            source: ConfigSource::File(path.to_path_buf()),
            ingress,
            services,
        })
    }

    /// The `http://host:port/v2` base for `service`: the ingress when configured, else the service's section.
    pub fn base_url(&self, service: Service) -> Result<String, ConfigError> {
        if let Some(ingress) = &self.ingress {
            return Ok(ingress.base_url());
        }
        match self.services.get(&service) {
            Some(endpoint) => Ok(endpoint.base_url()),
            None => Err(ConfigError::MissingService {
                service,
                path: match &self.source {
                    ConfigSource::File(path) => path.clone(),
                    ConfigSource::Defaults => PathBuf::from("(defaults)"),
                },
            }),
        }
    }
}

/// Reads `host`, `port` and `statusPort`; a section without a host or with port 0 counts as absent, as upstream
/// treats it.
fn parse_endpoint(section: &Value) -> Result<Option<Endpoint>, String> {
    let Value::Object(fields) = section else {
        if section.is_null() {
            return Ok(None);
        }
        return Err("expected a mapping with host and port".to_string());
    };
    let mut host = String::new();
    let mut port = 0u16;
    let mut status_port = None;
    for (key, value) in fields {
        match key.to_ascii_lowercase().as_str() {
            "host" => {
                host = match value {
                    Value::String(s) => s.trim().to_string(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                }
            }
            "port" => port = parse_port(value).map_err(|m| format!("port: {m}"))?,
            "statusport" => {
                let parsed = parse_port(value).map_err(|m| format!("statusPort: {m}"))?;
                status_port = (parsed != 0).then_some(parsed);
            }
            _ => {}
        }
    }
    if host.is_empty() || port == 0 {
        return Ok(None);
    }
    Ok(Some(Endpoint {
        host,
        port,
        status_port,
    }))
}

fn parse_port(value: &Value) -> Result<u16, String> {
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Null => Some(0),
        _ => None,
    };
    number
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("{value} is not a port number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::from_yaml(text, Path::new("cfg.yaml")).unwrap()
    }

    #[test]
    fn reads_upstream_example_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/emco-reference/generated-from-jacobtrvl-emco/examples/single-cluster/emco-cfg.yaml");
        let config = Config::from_file(&path).unwrap();
        assert_eq!(
            config.base_url(Service::Orchestrator).unwrap(),
            "http://192.0.2.10:30415/v2"
        );
        assert_eq!(
            config.base_url(Service::OvnAction).unwrap(),
            "http://192.0.2.10:30451/v2"
        );
        assert_eq!(config.services[&Service::Ncm].status_port, Some(30482));
        assert!(matches!(
            config.base_url(Service::Sfc),
            Err(ConfigError::MissingService {
                service: Service::Sfc,
                ..
            })
        ));
    }

    #[test]
    fn keys_are_case_insensitive_and_ports_may_be_strings() {
        let config = parse(
            "Orchestrator:\n  Host: h\n  PORT: \"9015\"\nhpaPlacement:\n  host: h2\n  port: 9091\n  statusPort: 0\n",
        );
        assert_eq!(
            config.base_url(Service::Orchestrator).unwrap(),
            "http://h:9015/v2"
        );
        assert_eq!(
            config.services[&Service::HpaPlacement],
            Endpoint::new("h2", 9091)
        );
    }

    #[test]
    fn ingress_overrides_every_service() {
        let config =
            parse("ingress:\n  host: 10.0.0.1\n  port: 80\norchestrator:\n  host: x\n  port: 1\n");
        for service in Service::ALL {
            assert_eq!(config.base_url(service).unwrap(), "http://10.0.0.1:80/v2");
        }
    }

    #[test]
    fn incomplete_sections_count_as_absent() {
        let config = parse(
            "clm:\n  host: a\ndcm:\n  port: 5\nincomplete_ingress: 1\ningress:\n  host: only-host\n",
        );
        assert!(config.ingress.is_none());
        assert!(config.services.is_empty());
        let err = config.base_url(Service::Clm).unwrap_err().to_string();
        assert!(
            err.contains("no clm information in config file cfg.yaml"),
            "{err}"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(
            Endpoint::new("::1", 9015).base_url(),
            "http://[::1]:9015/v2"
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let err =
            Config::from_yaml("clm:\n  host: a\n  port: 99999\n", Path::new("c.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("clm: port: 99999 is not a port number"),
            "{err}"
        );
        let err = Config::from_yaml("- a\n", Path::new("c.yaml")).unwrap_err();
        assert!(err.to_string().contains("expected a mapping"), "{err}");
        let err = Config::from_yaml("a: [\n", Path::new("c.yaml")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
    }

    #[test]
    fn defaults_and_home_lookup() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(None, Some(home.path())).unwrap(),
            Config::defaults()
        );
        assert_eq!(
            Config::defaults().base_url(Service::Clm).unwrap(),
            "http://localhost:9015/v2"
        );
        std::fs::write(
            home.path().join(".emco.yaml"),
            "clm:\n  host: c\n  port: 1\n",
        )
        .unwrap();
        let config = Config::load(None, Some(home.path())).unwrap();
        assert_eq!(
            config.source,
            ConfigSource::File(home.path().join(".emco.yaml"))
        );
        assert_eq!(config.base_url(Service::Clm).unwrap(), "http://c:1/v2");
        let missing = home.path().join("nope.yaml");
        assert!(matches!(
            Config::load(Some(&missing), Some(home.path())),
            Err(ConfigError::Read { .. })
        ));
    }
}
