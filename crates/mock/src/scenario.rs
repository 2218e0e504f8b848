//! Named fault scenarios (`--scenario`) and the timing every emulator follows.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::faults::FaultPlan;
use crate::hooks::EmulatedServers;

/// What goes wrong in a mock run. Each emulator reads the scenario and plays its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// Everything works.
    #[default]
    Healthy,
    /// A resource fails during creation: CloudFormation `CREATE_FAILED` then `ROLLBACK_*`;
    /// ARM deployment `Failed` with a failed deployment operation.
    CreateFails,
    /// `/healthz` answers 503 forever.
    HealthTimeout,
    /// No client ever enrolls.
    NoEnrollment,
    /// One tagged resource survives deletion (an EBS volume on AWS, a disk on Azure).
    TeardownLeaks,
    /// The first calls to each emulator are throttled (`Throttling` / `429` + `Retry-After`);
    /// the run must still pass.
    Throttled,
    /// Deletion fails once (`DELETE_FAILED` / RG delete `Failed`), then succeeds on retry.
    DeleteFails,
    /// Enrolled clients report an agent version other than the deployed one.
    VersionMismatch,
    /// The ARM deployment runs for [`Scenario::SLOW_DEPLOYMENT`] past the latency, outliving
    /// wait_ready's deadline; deleting its group without cancelling it leaves what it goes on
    /// creating. (CloudFormation is unaffected.)
    SlowDeployment,
    /// Like `create-fails`, but CloudFormation's rollback takes 3 × latency, and `DeleteStack`
    /// is refused until it settles (as it is on AWS while a stack is `*_IN_PROGRESS`). Azure
    /// plays `create-fails`.
    RollbackSlow,
    /// The wait condition publishes a CA other than the one the server prints on its serial
    /// console (someone signalled first). AWS only; Azure plays `healthy`.
    CaSpoofed,
    /// A client's boot fails (its Velociraptor download fails the checksum): on AWS its
    /// console ends with `cloudtest-boot-failed: <reason>`; no client enrolls on either cloud.
    ClientBootFails,
    /// Preflight: the permission simulator denies an action the run needs (AWS
    /// `ec2:RunInstances`; Azure: the role lacks `Microsoft.Compute/virtualMachines/write`).
    NoPermission,
    /// Preflight: no vCPU quota left (AWS quotas of 0; Azure usages at their limits).
    QuotaExhausted,
    /// Preflight: `Microsoft.Compute` is `NotRegistered` in the subscription (Azure only).
    ProviderUnregistered,
    /// Preflight: the server size is not offered where the run deploys (AWS: in no zone of
    /// the region; Azure: `NotAvailableForSubscription` in the location).
    SkuRestricted,
    /// AWS: the server size is not offered in the region's first zone (as t3 sizes are not
    /// in us-east-1e): a launch there fails with `Unsupported`, so the run must choose a
    /// zone that offers both sizes. Azure plays `healthy`.
    FirstZoneRestricted,
    /// Preflight: the login has expired and no token can be had (AWS `ExpiredToken` on every
    /// call; ARM `ExpiredAuthenticationToken` on every call).
    TokenExpired,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Scenario::Healthy,
        Scenario::CreateFails,
        Scenario::HealthTimeout,
        Scenario::NoEnrollment,
        Scenario::TeardownLeaks,
        Scenario::Throttled,
        Scenario::DeleteFails,
        Scenario::VersionMismatch,
        Scenario::SlowDeployment,
        Scenario::RollbackSlow,
        Scenario::CaSpoofed,
        Scenario::ClientBootFails,
        Scenario::NoPermission,
        Scenario::QuotaExhausted,
        Scenario::ProviderUnregistered,
        Scenario::SkuRestricted,
        Scenario::FirstZoneRestricted,
        Scenario::TokenExpired,
    ];

    /// Scenarios the preflight catches: a run under one stops before creating anything.
    pub const PREFLIGHT: [Scenario; 5] = [
        Scenario::NoPermission,
        Scenario::QuotaExhausted,
        Scenario::ProviderUnregistered,
        Scenario::SkuRestricted,
        Scenario::TokenExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::CreateFails => "create-fails",
            Scenario::HealthTimeout => "health-timeout",
            Scenario::NoEnrollment => "no-enrollment",
            Scenario::TeardownLeaks => "teardown-leaks",
            Scenario::Throttled => "throttled",
            Scenario::DeleteFails => "delete-fails",
            Scenario::VersionMismatch => "version-mismatch",
            Scenario::SlowDeployment => "slow-deployment",
            Scenario::RollbackSlow => "rollback-slow",
            Scenario::CaSpoofed => "ca-spoofed",
            Scenario::ClientBootFails => "client-boot-fails",
            Scenario::NoPermission => "no-permission",
            Scenario::QuotaExhausted => "quota-exhausted",
            Scenario::ProviderUnregistered => "provider-unregistered",
            Scenario::SkuRestricted => "sku-restricted",
            Scenario::FirstZoneRestricted => "first-zone-restricted",
            Scenario::TokenExpired => "token-expired",
        }
    }

    /// A resource fails during creation (`create-fails`, and `rollback-slow` which only
    /// stretches the rollback).
    pub fn create_fails(self) -> bool {
        matches!(self, Scenario::CreateFails | Scenario::RollbackSlow)
    }

    /// No client ever enrolls (`no-enrollment`, and `client-boot-fails`, whose client never
    /// gets as far as starting Velociraptor).
    pub fn clients_never_enroll(self) -> bool {
        matches!(self, Scenario::NoEnrollment | Scenario::ClientBootFails)
    }

    /// How long CloudFormation's rollback of a failed create takes, in emulator latencies.
    pub fn rollback_latencies(self) -> u32 {
        if self == Scenario::RollbackSlow {
            3
        } else {
            1
        }
    }

    /// How many calls per emulator the `throttled` scenario refuses first.
    pub const THROTTLED_CALLS: u32 = 3;

    /// How much longer than the latency a `slow-deployment` ARM deployment runs: longer than
    /// any mock wait_ready deadline.
    pub const SLOW_DEPLOYMENT: Duration = Duration::from_secs(3600);
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|x| x.as_str()).collect();
                format!("unknown scenario `{s}`; known: {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every emulator is started with.
#[derive(Clone)]
pub struct EmulatorContext {
    pub scenario: Scenario,
    /// How long each emulated long-running step takes: stack/deployment creation, deletion,
    /// server boot, client enrollment after boot. Zero means "done by the next poll", never
    /// synchronous: a client still sees one in-progress state.
    pub latency: Duration,
    pub faults: Arc<FaultPlan>,
    /// The emulated Velociraptor servers that stacks and deployments "boot".
    pub servers: Arc<dyn EmulatedServers>,
}
