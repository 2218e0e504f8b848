//! Skip guards: decide, without calling any cloud, whether a provider has credentials to try.
//! A missing credential makes the requirement `skipped` with the reason; the CLI decides
//! whether that skip is quiet (provider not asked for) or an error (provider named).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where environment variables and files come from; the process in the binary, a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn file_exists(&self, path: &Path) -> bool;
    fn home(&self) -> Option<PathBuf>;
}

/// The real process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
    fn file_exists(&self, path: &Path) -> bool {
        path.is_file()
    }
    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// A fixed environment for tests.
#[derive(Debug, Default, Clone)]
pub struct MapEnvironment {
    pub vars: BTreeMap<String, String>,
    pub files: Vec<PathBuf>,
    pub home: Option<PathBuf>,
}

impl MapEnvironment {
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
    pub fn with_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }
}

impl Environment for MapEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .cloned()
            .filter(|v| !v.trim().is_empty())
    }
    fn file_exists(&self, path: &Path) -> bool {
        self.files.iter().any(|f| f == path)
    }
    fn home(&self) -> Option<PathBuf> {
        self.home.clone()
    }
}

/// The guard's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Found; names the source (for messages: "using AWS_PROFILE=ci").
    Found { source: String },
    /// Not found; says what was looked for.
    Missing { looked_for: String },
}

impl Credentials {
    pub fn is_found(&self) -> bool {
        matches!(self, Credentials::Found { .. })
    }
}

/// AWS default-chain sources, checked in the SDK's order, without a network call.
pub fn aws_credentials(env: &dyn Environment) -> Credentials {
    if env.var("AWS_ACCESS_KEY_ID").is_some() && env.var("AWS_SECRET_ACCESS_KEY").is_some() {
        return Credentials::Found {
            source: "environment (AWS_ACCESS_KEY_ID)".into(),
        };
    }
    if let Some(p) = env.var("AWS_PROFILE") {
        return Credentials::Found {
            source: format!("profile AWS_PROFILE={p}"),
        };
    }
    if env.var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && env.var("AWS_ROLE_ARN").is_some() {
        return Credentials::Found {
            source: "web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)".into(),
        };
    }
    if env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        || env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
    {
        return Credentials::Found {
            source: "container credentials endpoint".into(),
        };
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = env.var("AWS_SHARED_CREDENTIALS_FILE") {
        files.push(f.into());
    }
    if let Some(f) = env.var("AWS_CONFIG_FILE") {
        files.push(f.into());
    }
    if let Some(home) = env.home() {
        files.push(home.join(".aws/credentials"));
        files.push(home.join(".aws/config"));
    }
    if let Some(found) = files.iter().find(|f| env.file_exists(f)) {
        return Credentials::Found {
            source: format!("shared file {}", found.display()),
        };
    }
    Credentials::Missing {
        looked_for: "AWS_ACCESS_KEY_ID+AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
                     AWS_WEB_IDENTITY_TOKEN_FILE+AWS_ROLE_ARN, container credentials, \
                     ~/.aws/credentials, ~/.aws/config"
            .into(),
    }
}

/// Azure: a subscription id plus one credential source `azure_identity` can use.
pub fn azure_credentials(env: &dyn Environment) -> Credentials {
    let looked_for = "AZURE_SUBSCRIPTION_ID plus one of: AZURE_CLIENT_SECRET \
                      (with AZURE_CLIENT_ID, AZURE_TENANT_ID), \
                      AZURE_FEDERATED_TOKEN_FILE (workload identity), managed identity \
                      (IDENTITY_ENDPOINT/MSI_ENDPOINT), Azure CLI login (~/.azure)";
    let Some(sub) = env.var("AZURE_SUBSCRIPTION_ID") else {
        return Credentials::Missing {
            looked_for: looked_for.into(),
        };
    };
    let sub_hint = format!("subscription {sub}");
    let tenant_client =
        env.var("AZURE_TENANT_ID").is_some() && env.var("AZURE_CLIENT_ID").is_some();
    let source = if tenant_client && env.var("AZURE_CLIENT_SECRET").is_some() {
        Some("service principal secret (AZURE_CLIENT_SECRET)")
    } else if tenant_client && env.var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        Some("workload identity (AZURE_FEDERATED_TOKEN_FILE)")
    } else if env.var("IDENTITY_ENDPOINT").is_some() || env.var("MSI_ENDPOINT").is_some() {
        Some("managed identity")
    } else {
        let cli_dir = env
            .var("AZURE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| env.home().map(|h| h.join(".azure")));
        match cli_dir {
            Some(dir) if env.file_exists(&dir.join("azureProfile.json")) => Some("Azure CLI login"),
            _ => None,
        }
    };
    match source {
        Some(s) => Credentials::Found {
            source: format!("{s}, {sub_hint}"),
        },
        None => Credentials::Missing {
            looked_for: looked_for.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_nothing_means_missing_and_says_what_was_looked_for() {
        let v = aws_credentials(&MapEnvironment::default());
        match v {
            Credentials::Missing { looked_for } => assert!(looked_for.contains("AWS_PROFILE")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aws_each_source_is_found() {
        let base = MapEnvironment {
            home: Some("/home/u".into()),
            ..Default::default()
        };
        let cases = [
            base.clone()
                .with("AWS_ACCESS_KEY_ID", "x")
                .with("AWS_SECRET_ACCESS_KEY", "y"),
            base.clone().with("AWS_PROFILE", "ci"),
            base.clone()
                .with("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")
                .with("AWS_ROLE_ARN", "arn"),
            base.clone().with_file("/home/u/.aws/credentials"),
            base.clone().with_file("/home/u/.aws/config"),
        ];
        for env in cases {
            assert!(aws_credentials(&env).is_found(), "{env:?}");
        }
        // A key id without its secret is not a credential.
        assert!(!aws_credentials(&base.with("AWS_ACCESS_KEY_ID", "x")).is_found());
    }

    #[test]
    fn azure_needs_subscription_and_a_source() {
        let sp = MapEnvironment::default()
            .with("AZURE_TENANT_ID", "t")
            .with("AZURE_CLIENT_ID", "c")
            .with("AZURE_CLIENT_SECRET", "s");
        assert!(!azure_credentials(&sp).is_found(), "no subscription");
        assert!(azure_credentials(&sp.clone().with("AZURE_SUBSCRIPTION_ID", "sub")).is_found());
        let oidc = MapEnvironment::default()
            .with("AZURE_SUBSCRIPTION_ID", "sub")
            .with("AZURE_TENANT_ID", "t")
            .with("AZURE_CLIENT_ID", "c")
            .with("AZURE_FEDERATED_TOKEN_FILE", "/f");
        assert!(azure_credentials(&oidc).is_found());
        let cli = MapEnvironment {
            home: Some("/h".into()),
            ..Default::default()
        }
        .with("AZURE_SUBSCRIPTION_ID", "sub")
        .with_file("/h/.azure/azureProfile.json");
        assert!(azure_credentials(&cli).is_found());
        let only_sub = MapEnvironment::default().with("AZURE_SUBSCRIPTION_ID", "sub");
        assert!(!azure_credentials(&only_sub).is_found());
    }
}
