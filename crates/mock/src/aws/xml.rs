//! XML responses in the shapes the AWS SDK deserializers expect: awsQuery (CloudFormation)
//! wraps results in `<XResponse><XResult>`, ec2Query puts them straight under
//! `<XResponse>`; errors have one shape per protocol.
//!
//! Handlers build a small element tree and [`Node::to_bytes`] writes it with quick-xml,
//! which escapes every text value.

use std::io;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

pub const CFN_NAMESPACE: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// One XML element: either text-only or a parent of further elements.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String, String),
    Parent(String, Vec<Node>),
}

impl Node {
    /// `<name>value</name>`.
    pub fn text(name: &str, value: impl Into<String>) -> Node {
        Node::Text(name.to_string(), value.into())
    }

    /// `<name>children</name>`.
    pub fn parent(name: &str, children: Vec<Node>) -> Node {
        Node::Parent(name.to_string(), children)
    }

    /// `<name>value</name>` when there is a value, nothing otherwise.
    pub fn opt(name: &str, value: Option<impl Into<String>>) -> Vec<Node> {
        value.map(|v| Node::text(name, v)).into_iter().collect()
    }

    /// A list of `<name><member>..</member>...</name>` (awsQuery lists).
    pub fn members(name: &str, items: Vec<Vec<Node>>) -> Node {
        Node::parent(
            name,
            items
                .into_iter()
                .map(|i| Node::parent("member", i))
                .collect(),
        )
    }

    /// A list of scalars `<name><member>v</member>...</name>` (awsQuery string lists).
    pub fn scalar_members(name: &str, values: &[String]) -> Node {
        Node::parent(
            name,
            values.iter().map(|v| Node::text("member", v)).collect(),
        )
    }

    /// A list of `<name><item>..</item>...</name>` (ec2Query lists).
    pub fn items(name: &str, items: Vec<Vec<Node>>) -> Node {
        Node::parent(
            name,
            items.into_iter().map(|i| Node::parent("item", i)).collect(),
        )
    }

    fn write(&self, w: &mut Writer<Vec<u8>>, namespace: Option<&str>) -> io::Result<()> {
        let (name, start) = match self {
            Node::Text(name, _) | Node::Parent(name, _) => {
                let mut start = BytesStart::new(name.as_str());
                if let Some(ns) = namespace {
                    start.push_attribute(("xmlns", ns));
                }
                (name, start)
            }
        };
        w.write_event(Event::Start(start))?;
        match self {
            Node::Text(_, value) => w.write_event(Event::Text(BytesText::new(value)))?,
            Node::Parent(_, children) => {
                for child in children {
                    child.write(w, None)?;
                }
            }
        }
        w.write_event(Event::End(BytesEnd::new(name.as_str())))
    }

    /// The document: declaration plus this element, carrying `namespace` when given.
    pub fn to_bytes(&self, namespace: Option<&str>) -> io::Result<Vec<u8>> {
        let mut w = Writer::new(Vec::new());
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        self.write(&mut w, namespace)?;
        Ok(w.into_inner())
    }
}

/// `<ActionResponse><ActionResult>result</ActionResult><ResponseMetadata>..` (awsQuery).
pub fn cfn_response(action: &str, result: Option<Vec<Node>>, request_id: &str) -> Node {
    let mut children = Vec::new();
    if let Some(result) = result {
        children.push(Node::parent(&format!("{action}Result"), result));
    }
    children.push(Node::parent(
        "ResponseMetadata",
        vec![Node::text("RequestId", request_id)],
    ));
    Node::parent(&format!("{action}Response"), children)
}

/// `<ErrorResponse><Error><Type>..<Code>..<Message>..</Error><RequestId>..` (awsQuery).
pub fn cfn_error(sender_fault: bool, code: &str, message: &str, request_id: &str) -> Node {
    Node::parent(
        "ErrorResponse",
        vec![
            Node::parent(
                "Error",
                vec![
                    Node::text("Type", if sender_fault { "Sender" } else { "Receiver" }),
                    Node::text("Code", code),
                    Node::text("Message", message),
                ],
            ),
            Node::text("RequestId", request_id),
        ],
    )
}

/// `<ActionResponse><requestId>..</requestId>fields..` (ec2Query).
pub fn ec2_response(action: &str, fields: Vec<Node>, request_id: &str) -> Node {
    let mut children = vec![Node::text("requestId", request_id)];
    children.extend(fields);
    Node::parent(&format!("{action}Response"), children)
}

/// `<Response><Errors><Error><Code>..<Message>..</Error></Errors><RequestID>..` (ec2Query).
pub fn ec2_error(code: &str, message: &str, request_id: &str) -> Node {
    Node::parent(
        "Response",
        vec![
            Node::parent(
                "Errors",
                vec![Node::parent(
                    "Error",
                    vec![Node::text("Code", code), Node::text("Message", message)],
                )],
            ),
            Node::text("RequestID", request_id),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_sets_the_namespace_on_the_root_only() {
        let doc = cfn_response(
            "DescribeStacks",
            Some(vec![Node::text("Note", "a<b & \"c\"")]),
            "r-1",
        );
        let xml =
            String::from_utf8(doc.to_bytes(Some(CFN_NAMESPACE)).expect("write")).expect("utf8");
        assert!(xml.contains(&format!(
            "<DescribeStacksResponse xmlns=\"{CFN_NAMESPACE}\">"
        )));
        assert!(xml.contains(
            "<DescribeStacksResult><Note>a&lt;b &amp; &quot;c&quot;</Note></DescribeStacksResult>"
        ));
        assert!(xml.contains("<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"));
        assert_eq!(xml.matches("xmlns").count(), 1);
    }

    #[test]
    fn error_shapes_match_each_protocol() {
        let cfn = String::from_utf8(
            cfn_error(true, "ValidationError", "bad", "r")
                .to_bytes(None)
                .expect("w"),
        )
        .expect("utf8");
        assert!(cfn.contains("<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>bad</Message></Error><RequestId>r</RequestId></ErrorResponse>"));
        let ec2 =
            String::from_utf8(ec2_error("X", "y", "r").to_bytes(None).expect("w")).expect("utf8");
        assert!(ec2.contains("<Response><Errors><Error><Code>X</Code><Message>y</Message></Error></Errors><RequestID>r</RequestID></Response>"));
    }
}
