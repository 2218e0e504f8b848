//! Failure evidence, as pure formatting over what the provider read: the first failed stack
//! events and the wait-condition reasons, consoles with secrets and pre-signed URLs removed.

use crate::events::StackEventRecord;
use crate::identity::is_presigned_url;

/// How many failed events `stack-events.txt` lists (the first are the causes).
pub const FAILED_EVENTS: usize = 10;

/// `stack-events.txt`: the first failed events (oldest first) with their reasons; the
/// rest of the stream is in the run's progress log.
pub fn failed_events_text(stack: &str, events: &[StackEventRecord]) -> String {
    let failed: Vec<&StackEventRecord> = events
        .iter()
        .filter(|e| e.status.ends_with("_FAILED") || e.status == "ROLLBACK_IN_PROGRESS")
        .take(FAILED_EVENTS)
        .collect();
    let mut text = format!("Failed events of stack {stack}, oldest first\n\n");
    if failed.is_empty() {
        text.push_str("(no failed event was read)\n");
    }
    for e in failed {
        let physical = if is_presigned_url(&e.physical_id) {
            "[pre-signed URL withheld]"
        } else {
            e.physical_id.as_str()
        };
        text.push_str(&format!(
            "{} {} {} {} ({})\n    {}\n",
            e.timestamp.as_deref().unwrap_or("-"),
            e.status,
            e.resource_type,
            e.logical_id,
            if physical.is_empty() {
                "no physical id"
            } else {
                physical
            },
            e.reason.as_deref().unwrap_or("no reason given"),
        ));
    }
    text
}

/// `boot-signal.txt`: what the boot scripts signalled through their wait conditions
/// (CloudFormation puts a failure signal's `Reason` into the wait condition's event).
pub fn boot_signal_text(events: &[StackEventRecord]) -> Option<String> {
    let lines: Vec<String> = events
        .iter()
        .filter(|e| e.resource_type == "AWS::CloudFormation::WaitCondition")
        .filter(|e| e.status.ends_with("_FAILED"))
        .map(|e| {
            format!(
                "{} {}: {}",
                e.logical_id,
                e.status,
                e.reason.as_deref().unwrap_or("no reason given")
            )
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n") + "\n")
}

/// What a boot script prints on the serial console when it stops: `cloudtest-boot-failed:
/// <reason>` (its ERR trap; the reason names the failed command, never a secret's value).
pub const BOOT_FAILED_MARKER: &str = "cloudtest-boot-failed:";

/// The reason of the last boot failure the console shows, at most 300 characters.
pub fn boot_failure(console: &str) -> Option<String> {
    let line = console
        .lines()
        .rev()
        .find(|l| l.contains(BOOT_FAILED_MARKER))?;
    let (_, reason) = line.split_once(BOOT_FAILED_MARKER)?;
    let reason = reason.trim();
    (!reason.is_empty()).then(|| reason.chars().take(300).collect())
}

/// Removes `secrets` and any pre-signed URL from console text.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            line = line.replace(s, "[redacted]");
        }
        if is_presigned_url(&line) && line.to_ascii_lowercase().contains("signature") {
            line = "[line with a pre-signed URL withheld]".to_string();
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_boot_failure_on_the_console_is_its_reason() {
        let console = "[ 1.0] boot\r\n[ 12.9] cloud-init[1203]: cloudtest-boot-failed: download failed (line 68: curl exited 22)\r\n[ 13.0] cloud-init[1203]: cloudtest-boot-failed: velociraptor-v0.77.2-linux-amd64 failed its SHA-256 check\r\n";
        assert_eq!(
            boot_failure(console).as_deref(),
            Some("velociraptor-v0.77.2-linux-amd64 failed its SHA-256 check")
        );
        assert_eq!(boot_failure("[ 1.0] boot\n[ 2.0] client started\n"), None);
        assert_eq!(boot_failure("cloudtest-boot-failed:   \n"), None);
        let long = format!("cloudtest-boot-failed: {}", "x".repeat(1000));
        assert_eq!(boot_failure(&long).map(|r| r.len()), Some(300));
    }

    fn event(
        status: &str,
        ty: &str,
        logical: &str,
        physical: &str,
        reason: &str,
    ) -> StackEventRecord {
        StackEventRecord {
            event_id: format!("{logical}-{status}"),
            timestamp: Some("2024-01-01T00:00:00Z".into()),
            logical_id: logical.into(),
            physical_id: physical.into(),
            resource_type: ty.into(),
            status: status.into(),
            reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        }
    }

    #[test]
    fn failed_events_name_the_cause_and_withhold_handle_urls() {
        let events = vec![
            event("CREATE_COMPLETE", "AWS::EC2::VPC", "Vpc", "vpc-1", ""),
            event(
                "CREATE_COMPLETE",
                "AWS::CloudFormation::WaitConditionHandle",
                "ServerReadyHandle",
                "https://cloudformation-waitcondition-us-east-1.s3.amazonaws.com/x?X-Amz-Signature=abc",
                "",
            ),
            event("CREATE_FAILED", "AWS::EC2::Instance", "ServerInstance", "i-1", "capacity"),
            event(
                "CREATE_FAILED",
                "AWS::CloudFormation::WaitCondition",
                "ServerReady",
                "https://cloudformation-waitcondition-us-east-1.s3.amazonaws.com/x?X-Amz-Signature=abc",
                "WaitCondition received failed message: 'download failed' for uniqueId: server",
            ),
        ];
        let text = failed_events_text("cloudtest-r1", &events);
        assert!(
            text.contains("ServerInstance (i-1)\n    capacity"),
            "{text}"
        );
        assert!(!text.contains("Signature"), "{text}");
        assert!(!text.contains("vpc-1"));
        let signal = boot_signal_text(&events).expect("a signal");
        assert!(signal.contains("download failed"));
        assert_eq!(boot_signal_text(&events[..2]), None);
    }

    #[test]
    fn consoles_lose_secrets_and_presigned_urls() {
        let console = "boot: user admin password hunter2hunter2\n\
            curl -X PUT https://cloudformation-waitcondition-x.s3.amazonaws.com/a?X-Amz-Signature=1\n\
            cloudtest-ca-sha256=ab:cd\n";
        let text = redact(console, &["hunter2hunter2", ""]);
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("Signature"));
        assert!(text.contains("cloudtest-ca-sha256=ab:cd"));
    }
}
