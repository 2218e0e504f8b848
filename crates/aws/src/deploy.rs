//! `CfnStacks`: one method per CloudFormation call the provider makes, returning plain
//! records instead of SDK types, and turning every missing `Option` into an error that
//! names the field.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_cloudformation::primitives::{DateTime, DateTimeFormat};
use aws_sdk_cloudformation::types::{Capability, OnFailure, Parameter, Stack, StackEvent, Tag};
use aws_sdk_cloudformation::Client;

use crate::calls::CallCounter;
use crate::errors::{AwsError, ErrorContext};
use crate::events::{StackEventPager, StackEventRecord};
use crate::parameters::ParameterValue;

const SERVICE: &str = "cloudformation";

/// What DescribeStacks says about one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSnapshot {
    pub stack_id: String,
    pub name: String,
    pub status: String,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub creation_time: Option<String>,
}

/// One resource of a stack, as DescribeStackResources lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResourceRecord {
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

/// Everything CreateStack needs.
#[derive(Debug, Clone)]
pub struct CreateStackRequest {
    pub name: String,
    pub template_body: String,
    pub parameters: BTreeMap<String, ParameterValue>,
    pub tags: BTreeMap<String, String>,
    /// Makes SDK retries of CreateStack idempotent.
    pub client_request_token: String,
    /// `OnFailure=DO_NOTHING` instead of the default rollback.
    pub keep_on_failure: bool,
}

/// A CloudFormation client plus what its error messages need.
#[derive(Clone)]
pub struct CfnStacks {
    client: Client,
    errors: ErrorContext,
    /// The CloudFormation service role sent as `RoleARN` with CreateStack and DeleteStack.
    role_arn: Option<String>,
}

impl CfnStacks {
    pub fn new(sdk: &SdkConfig, counter: &CallCounter, errors: ErrorContext) -> Self {
        let config = aws_sdk_cloudformation::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build();
        Self {
            client: Client::from_conf(config),
            errors,
            role_arn: None,
        }
    }

    /// CreateStack and DeleteStack carry `RoleARN`: CloudFormation then creates and deletes
    /// the stack's resources with that service role's permissions, not the caller's (who
    /// needs `iam:PassRole` on it). `None` sends no `RoleARN`.
    pub fn with_role_arn(mut self, role_arn: Option<String>) -> Self {
        self.role_arn = role_arn;
        self
    }

    /// The service role CreateStack and DeleteStack carry, if any.
    pub fn role_arn(&self) -> Option<&str> {
        self.role_arn.as_deref()
    }

    /// Replaces the credential source named in error messages.
    pub fn set_credential_source(&mut self, source: &str) {
        self.errors.credential_source = source.to_string();
    }

    /// Starts the stack and returns its id. Rollback stays enabled (no `OnFailure=DELETE`):
    /// the events survive for the failure line and teardown deletes what is left. With
    /// `keep_on_failure`, `OnFailure=DO_NOTHING` keeps a failed create's resources.
    pub async fn create(&self, req: &CreateStackRequest) -> Result<String, AwsError> {
        let mut call = self
            .client
            .create_stack()
            .stack_name(&req.name)
            .template_body(&req.template_body)
            .client_request_token(&req.client_request_token)
            .set_role_arn(self.role_arn.clone())
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam);
        if req.keep_on_failure {
            call = call.on_failure(OnFailure::DoNothing);
        }
        for (key, value) in &req.parameters {
            call = call.parameters(
                Parameter::builder()
                    .parameter_key(key)
                    .parameter_value(value.expose())
                    .build(),
            );
        }
        for (key, value) in &req.tags {
            call = call.tags(Tag::builder().key(key).value(value).build());
        }
        let out = call
            .send()
            .await
            .map_err(|e| self.errors.sdk("CreateStack", &req.name, SERVICE, e))?;
        out.stack_id.ok_or_else(|| AwsError::MissingField {
            operation: "CreateStack",
            target: req.name.clone(),
            field: "StackId",
        })
    }

    /// The stack, or `None` when CloudFormation says it does not exist (by name, that is
    /// also what a deleted stack looks like).
    pub async fn describe(&self, name: &str) -> Result<Option<StackSnapshot>, AwsError> {
        match self.client.describe_stacks().stack_name(name).send().await {
            Ok(out) => match out.stacks.unwrap_or_default().into_iter().next() {
                Some(stack) => snapshot(stack, name).map(Some),
                None => Ok(None),
            },
            Err(e) => {
                let err = self.errors.sdk("DescribeStacks", name, SERVICE, e);
                if err.is_stack_missing() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Every stack in the region (for `sweep`).
    pub async fn list_all(&self) -> Result<Vec<StackSnapshot>, AwsError> {
        let mut pages = self.client.describe_stacks().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.errors.sdk("DescribeStacks", "all stacks", SERVICE, e))?;
            for stack in page.stacks.unwrap_or_default() {
                out.push(snapshot(stack, "a listed stack")?);
            }
        }
        Ok(out)
    }

    /// Reads only the event pages newer than what `pager` has seen, returning the new
    /// events oldest-first.
    pub async fn new_events(
        &self,
        name: &str,
        pager: &mut StackEventPager,
    ) -> Result<Vec<StackEventRecord>, AwsError> {
        let mut token: Option<String> = None;
        loop {
            let result = self
                .client
                .describe_stack_events()
                .stack_name(name)
                .set_next_token(token.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    pager.discard();
                    return Err(self.errors.sdk("DescribeStackEvents", name, SERVICE, e));
                }
            };
            let page: Vec<StackEventRecord> = out
                .stack_events
                .unwrap_or_default()
                .into_iter()
                .filter_map(event_record)
                .collect();
            let reached_seen = pager.feed(page);
            match out.next_token {
                Some(next) if !reached_seen && !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok(pager.finish())
    }

    pub async fn resources(&self, name: &str) -> Result<Vec<StackResourceRecord>, AwsError> {
        let out = self
            .client
            .describe_stack_resources()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| self.errors.sdk("DescribeStackResources", name, SERVICE, e))?;
        Ok(out
            .stack_resources
            .unwrap_or_default()
            .into_iter()
            .map(|r| StackResourceRecord {
                logical_id: r.logical_resource_id.unwrap_or_default(),
                physical_id: r.physical_resource_id.filter(|p| !p.is_empty()),
                resource_type: r.resource_type.unwrap_or_default(),
                status: r
                    .resource_status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reason: r.resource_status_reason,
            })
            .collect())
    }

    pub async fn delete(&self, name: &str, client_request_token: &str) -> Result<(), AwsError> {
        self.client
            .delete_stack()
            .stack_name(name)
            .client_request_token(client_request_token)
            .set_role_arn(self.role_arn.clone())
            .send()
            .await
            .map_err(|e| self.errors.sdk("DeleteStack", name, SERVICE, e))?;
        Ok(())
    }
}

fn format_time(t: Option<&DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
}

fn snapshot(stack: Stack, asked_for: &str) -> Result<StackSnapshot, AwsError> {
    let missing = |field| AwsError::MissingField {
        operation: "DescribeStacks",
        target: asked_for.to_string(),
        field,
    };
    let status = stack
        .stack_status()
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| missing("StackStatus"))?;
    let stack_id = stack
        .stack_id()
        .ok_or_else(|| missing("StackId"))?
        .to_string();
    let name = stack.stack_name().unwrap_or(asked_for).to_string();
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    let tags = stack
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    Ok(StackSnapshot {
        stack_id,
        name,
        status,
        reason: stack.stack_status_reason().map(str::to_string),
        outputs,
        tags,
        creation_time: format_time(stack.creation_time()),
    })
}

/// Events without an id cannot be paged past; they are dropped (AWS always sends one).
fn event_record(e: StackEvent) -> Option<StackEventRecord> {
    Some(StackEventRecord {
        timestamp: format_time(e.timestamp()),
        event_id: e.event_id?,
        logical_id: e.logical_resource_id.unwrap_or_default(),
        physical_id: e.physical_resource_id.unwrap_or_default(),
        resource_type: e.resource_type.unwrap_or_default(),
        status: e
            .resource_status
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        reason: e.resource_status_reason.filter(|r| !r.is_empty()),
    })
}
