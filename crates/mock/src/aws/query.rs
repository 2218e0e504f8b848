//! The form-encoded request body of awsQuery / ec2Query calls (`Action=..&Version=..`), with
//! the numbered-list conventions both protocols use (`Tags.member.1.Key`, `Filter.1.Value.2`,
//! `InstanceId.1`).

use std::collections::BTreeMap;

/// CloudFormation's API version; EC2's is `2016-11-15`.
pub const CFN_VERSION: &str = "2010-05-15";
pub const EC2_VERSION: &str = "2016-11-15";

#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    fields: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is not a form-encoded AWS query: {0}")]
pub struct QueryParseError(#[from] serde_urlencoded::de::Error);

impl QueryRequest {
    pub fn parse(body: &[u8]) -> Result<Self, QueryParseError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)?;
        Ok(Self {
            fields: pairs.into_iter().collect(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn action(&self) -> &str {
        self.get("Action").unwrap_or("")
    }

    pub fn version(&self) -> &str {
        self.get("Version").unwrap_or("")
    }

    /// The structures of a numbered list: for `prefix` = `Tags.member`, one map per
    /// `Tags.member.N.*`, ordered by N, keyed by what follows `N.`.
    pub fn structs(&self, prefix: &str) -> Vec<BTreeMap<String, String>> {
        let mut by_index: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        let head = format!("{prefix}.");
        for (key, value) in &self.fields {
            let Some(rest) = key.strip_prefix(&head) else {
                continue;
            };
            let Some((index, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(index) = index.parse::<u32>() else {
                continue;
            };
            by_index
                .entry(index)
                .or_default()
                .insert(field.to_string(), value.clone());
        }
        by_index.into_values().collect()
    }

    /// The values of a numbered scalar list: `InstanceId.1`, `InstanceId.2`, ... in order.
    pub fn values(&self, prefix: &str) -> Vec<String> {
        numbered_values(&self.fields, prefix)
    }

    /// `Key`/`Value` pairs of `prefix.member.N` (CloudFormation tags).
    pub fn cfn_tags(&self) -> Vec<(String, String)> {
        self.structs("Tags.member")
            .into_iter()
            .filter_map(|m| {
                Some((
                    m.get("Key")?.clone(),
                    m.get("Value").cloned().unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// EC2 `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn ec2_filters(&self) -> Vec<(String, Vec<String>)> {
        self.structs("Filter")
            .into_iter()
            .filter_map(|m| {
                let name = m.get("Name")?.clone();
                Some((name, numbered_values(&m, "Value")))
            })
            .collect()
    }
}

fn numbered_values(fields: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    let head = format!("{prefix}.");
    let mut found: Vec<(u32, String)> = fields
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix(&head)?.parse::<u32>().ok()?;
            Some((index, v.clone()))
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbered_lists_in_numeric_order() {
        let body = b"Action=CreateStack&Version=2010-05-15&Tags.member.10.Key=k10&Tags.member.10.Value=v10\
&Tags.member.2.Key=k2&Tags.member.2.Value=v%202&Filter.1.Name=tag%3Aa&Filter.1.Value.2=y&Filter.1.Value.1=x\
&InstanceId.2=i-2&InstanceId.1=i-1";
        let q = QueryRequest::parse(body).expect("parse");
        assert_eq!(q.action(), "CreateStack");
        assert_eq!(q.version(), CFN_VERSION);
        assert_eq!(
            q.cfn_tags(),
            vec![("k2".into(), "v 2".into()), ("k10".into(), "v10".into())]
        );
        assert_eq!(
            q.ec2_filters(),
            vec![("tag:a".into(), vec!["x".into(), "y".into()])]
        );
        assert_eq!(
            q.values("InstanceId"),
            vec!["i-1".to_string(), "i-2".to_string()]
        );
    }
}
