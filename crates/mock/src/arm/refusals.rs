//! Pre-flight refusals of a deployment PUT, in the shape ARM gives them: HTTP 400
//! `InvalidTemplateDeployment` whose `details[]` carry the cause (the common `ErrorResponse`
//! schema with recursive `details`, azure-rest-api-specs
//! `specification/resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json`;
//! outer message as in Microsoft Learn's deployment-error pages). Nothing is created.

use axum::http::StatusCode;
use serde_json::json;

use super::errors::ArmError;

/// The causes ARM reports before a deployment starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SkuNotAvailable,
    QuotaExceeded,
    RequestDisallowedByPolicy,
    MissingSubscriptionRegistration,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::SkuNotAvailable,
        Refusal::QuotaExceeded,
        Refusal::RequestDisallowedByPolicy,
        Refusal::MissingSubscriptionRegistration,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Refusal::SkuNotAvailable => "SkuNotAvailable",
            Refusal::QuotaExceeded => "QuotaExceeded",
            Refusal::RequestDisallowedByPolicy => "RequestDisallowedByPolicy",
            Refusal::MissingSubscriptionRegistration => "MissingSubscriptionRegistration",
        }
    }

    fn cause(self, location: &str) -> serde_json::Value {
        let message = match self {
            Refusal::SkuNotAvailable => format!(
                "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: Standard_B2s' is currently not available in location '{location}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."
            ),
            Refusal::QuotaExceeded => format!(
                "Operation could not be completed as it results in exceeding approved standardBSFamily Cores quota. Location: {location}, Current Limit: 0, Current Usage: 0, Additional Required: 4, (Minimum) New Limit Required: 4."
            ),
            Refusal::RequestDisallowedByPolicy => "Resource 'vr-server-ip' was disallowed by policy. Reasons: 'Public IP addresses are not allowed'. See error details for policy resource IDs.".to_string(),
            Refusal::MissingSubscriptionRegistration => "The subscription is not registered to use namespace 'Microsoft.Compute'. See https://aka.ms/rps-not-found for how to register subscriptions.".to_string(),
        };
        json!({"code": self.code(), "message": message})
    }

    /// The answer to the deployment PUT.
    pub fn error(self, deployment: &str, location: &str) -> ArmError {
        let mut e = ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidTemplateDeployment",
            format!(
                "The template deployment '{deployment}' is not valid according to the validation procedure. The tracking id is '{}'. See inner errors for details.",
                uuid::Uuid::new_v4()
            ),
        );
        e.details = vec![self.cause(location)];
        e
    }
}
