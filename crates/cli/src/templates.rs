//! Where a run's templates come from. The shipped templates are compiled into the binary, so
//! `cloudtest` works from any directory; a file named by a flag or the config always wins,
//! then `templates-cfn/…`/`templates-arm/…` in the working directory (a checkout being
//! edited), then the embedded copy. The plan says which was used.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::usage;

pub const DEFAULT_AWS_TEMPLATE: &str = "templates-cfn/velociraptor.yaml";
pub const DEFAULT_AZURE_TEMPLATE: &str = "templates-arm/velociraptor.json";

const EMBEDDED_AWS: &str = include_str!("../../../templates-cfn/velociraptor.yaml");
const EMBEDDED_AZURE: &str = include_str!("../../../templates-arm/velociraptor.json");

/// Why this template was chosen, for the plan and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// `--template`, `--aws-template` or `--azure-template`.
    Flag,
    /// `[aws] template` / `[azure] template`.
    Config,
    /// The default path, found in the working directory.
    WorkingDirectory,
    /// The copy compiled into this binary.
    Embedded,
}

impl TemplateOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateOrigin::Flag => "flag",
            TemplateOrigin::Config => "config",
            TemplateOrigin::WorkingDirectory => "working directory",
            TemplateOrigin::Embedded => "embedded in the binary",
        }
    }
}

/// A template's text and where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedTemplate {
    pub path: PathBuf,
    pub body: String,
    pub origin: TemplateOrigin,
}

impl ResolvedTemplate {
    /// `templates-cfn/velociraptor.yaml (embedded in the binary)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.path.display(), self.origin.as_str())
    }
}

/// Which of the two shipped templates.
#[derive(Debug, Clone, Copy)]
pub enum Shipped {
    Aws,
    Azure,
}

impl Shipped {
    fn default_path(self) -> &'static str {
        match self {
            Shipped::Aws => DEFAULT_AWS_TEMPLATE,
            Shipped::Azure => DEFAULT_AZURE_TEMPLATE,
        }
    }

    fn embedded(self) -> &'static str {
        match self {
            Shipped::Aws => EMBEDDED_AWS,
            Shipped::Azure => EMBEDDED_AZURE,
        }
    }
}

/// Picks the template: an explicit path (flag, then config) must exist; otherwise the
/// default path under `cwd`, otherwise the embedded copy.
pub fn resolve(
    shipped: Shipped,
    flag: Option<PathBuf>,
    config: Option<PathBuf>,
    cwd: &Path,
) -> Result<ResolvedTemplate> {
    let explicit = flag
        .map(|p| (p, TemplateOrigin::Flag))
        .or_else(|| config.map(|p| (p, TemplateOrigin::Config)));
    if let Some((path, origin)) = explicit {
        let body = read(&path, origin)?;
        return Ok(ResolvedTemplate { path, body, origin });
    }
    let path = PathBuf::from(shipped.default_path());
    let local = cwd.join(&path);
    if local.is_file() {
        let body = read(&local, TemplateOrigin::WorkingDirectory)?;
        return Ok(ResolvedTemplate {
            path,
            body,
            origin: TemplateOrigin::WorkingDirectory,
        });
    }
    Ok(ResolvedTemplate {
        path,
        body: shipped.embedded().to_string(),
        origin: TemplateOrigin::Embedded,
    })
}

fn read(path: &Path, origin: TemplateOrigin) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        let named_by = match origin {
            TemplateOrigin::Flag => "named by the template flag",
            TemplateOrigin::Config => "named by the config file",
            _ => "in the working directory",
        };
        usage(format!(
            "template {} ({named_by}): {e}; fix the path, or leave it out to use the template shipped in the binary",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_template_is_used_outside_a_checkout() {
        let empty = tempfile::tempdir().expect("tmp");
        for shipped in [Shipped::Aws, Shipped::Azure] {
            let t = resolve(shipped, None, None, empty.path()).expect("embedded");
            assert_eq!(t.origin, TemplateOrigin::Embedded);
            assert_eq!(t.body, shipped.embedded());
            assert!(
                t.describe().ends_with("(embedded in the binary)"),
                "{}",
                t.describe()
            );
        }
        assert!(EMBEDDED_AWS.contains("AWS::CloudFormation::WaitCondition"));
        assert!(EMBEDDED_AZURE.contains("deploymentTemplate.json"));
    }

    #[test]
    fn a_working_directory_copy_then_the_config_then_a_flag_win() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("templates-cfn")).expect("mkdir");
        std::fs::write(dir.path().join(DEFAULT_AWS_TEMPLATE), "local").expect("write");
        let local = resolve(Shipped::Aws, None, None, dir.path()).expect("local");
        assert_eq!(local.origin, TemplateOrigin::WorkingDirectory);
        assert_eq!(local.body, "local");

        let cfg = dir.path().join("cfg.yaml");
        std::fs::write(&cfg, "from config").expect("write");
        let by_config = resolve(Shipped::Aws, None, Some(cfg.clone()), dir.path()).expect("cfg");
        assert_eq!(by_config.origin, TemplateOrigin::Config);
        assert_eq!(by_config.body, "from config");

        let flag = dir.path().join("flag.yaml");
        std::fs::write(&flag, "from flag").expect("write");
        let by_flag = resolve(Shipped::Aws, Some(flag), Some(cfg), dir.path()).expect("flag");
        assert_eq!(by_flag.origin, TemplateOrigin::Flag);
        assert_eq!(by_flag.body, "from flag");
    }

    #[test]
    fn a_missing_explicit_template_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().expect("tmp");
        let err = resolve(
            Shipped::Azure,
            Some(dir.path().join("nope.json")),
            None,
            dir.path(),
        )
        .expect_err("missing");
        let text = format!("{err:#}");
        assert!(text.contains("nope.json"), "{text}");
        assert!(text.contains("named by the template flag"), "{text}");
    }
}
