//! The three requirements of the gap document and how a requirement ended.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RequirementId {
    #[serde(rename = "CLOUD-01")]
    Cloud01,
    #[serde(rename = "CLOUD-02")]
    Cloud02,
    #[serde(rename = "CLOUD-03")]
    Cloud03,
}

impl RequirementId {
    pub fn as_str(self) -> &'static str {
        match self {
            RequirementId::Cloud01 => "CLOUD-01",
            RequirementId::Cloud02 => "CLOUD-02",
            RequirementId::Cloud03 => "CLOUD-03",
        }
    }

    /// The provider name results.json uses for this requirement.
    pub fn provider(self) -> &'static str {
        match self {
            RequirementId::Cloud01 => "aws",
            RequirementId::Cloud02 => "azure",
            RequirementId::Cloud03 => "cross-cloud",
        }
    }
}

impl std::fmt::Display for RequirementId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ordered by severity: `max()` over a run gives its worst outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequirementStatus {
    Skipped,
    Passed,
    Failed,
    Error,
}

/// Which lifecycle this is: one per (requirement, region).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LifecycleId {
    pub requirement: RequirementId,
    pub region: String,
}

impl LifecycleId {
    pub fn new(requirement: RequirementId, region: impl Into<String>) -> Self {
        Self {
            requirement,
            region: region.into(),
        }
    }
}

impl std::fmt::Display for LifecycleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.requirement, self.region)
    }
}
