//! The OData `$filter` subset ARM's list calls accept:
//! `tagName eq 'k' [and tagValue eq 'v']`, `resourceType eq 't'`, `name eq 'n'`,
//! `location eq 'l'`, joined by `and`.

use serde_json::{Map, Value};

/// One `field eq 'value'` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    TagName(String),
    TagValue(String),
    ResourceType(String),
    Name(String),
    Location(String),
}

/// A parsed filter: every clause must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        text.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => text.push(ch),
                    None => return Err("a quoted value is not terminated".into()),
                }
            }
            out.push(Token::Quoted(text));
        } else {
            let mut word = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == '\'' {
                    break;
                }
                word.push(ch);
                chars.next();
            }
            out.push(Token::Word(word));
        }
    }
    Ok(out)
}

impl Filter {
    /// Parses a `$filter` value; the error says what is not supported.
    pub fn parse(s: &str) -> Result<Self, String> {
        let tokens = tokenize(s)?;
        let mut clauses = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            if i > 0 {
                match &tokens[i] {
                    Token::Word(w) if w.eq_ignore_ascii_case("and") => i += 1,
                    _ => return Err("clauses must be joined with 'and'".into()),
                }
            }
            let (Some(Token::Word(field)), Some(Token::Word(op)), Some(Token::Quoted(value))) =
                (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
            else {
                return Err("each clause must look like: field eq 'value'".into());
            };
            if !op.eq_ignore_ascii_case("eq") {
                return Err(format!("the operator '{op}' is not supported; use 'eq'"));
            }
            let value = value.clone();
            clauses.push(match field.to_ascii_lowercase().as_str() {
                "tagname" => Clause::TagName(value),
                "tagvalue" => Clause::TagValue(value),
                "resourcetype" => Clause::ResourceType(value),
                "name" => Clause::Name(value),
                "location" => Clause::Location(value),
                other => return Err(format!("the field '{other}' is not supported")),
            });
            i += 3;
        }
        let has_name = clauses.iter().any(|c| matches!(c, Clause::TagName(_)));
        if clauses.iter().any(|c| matches!(c, Clause::TagValue(_))) && !has_name {
            return Err("'tagValue' can only be used together with 'tagName'".into());
        }
        Ok(Self { clauses })
    }

    /// Whether an object with these fields passes. Tag names compare case-insensitively,
    /// tag values exactly, as ARM does.
    pub fn matches(
        &self,
        name: &str,
        type_: &str,
        location: &str,
        tags: &Map<String, Value>,
    ) -> bool {
        let tag_name = self.clauses.iter().find_map(|c| match c {
            Clause::TagName(n) => Some(n),
            _ => None,
        });
        let tag_value = self.clauses.iter().find_map(|c| match c {
            Clause::TagValue(v) => Some(v),
            _ => None,
        });
        if let Some(tag_name) = tag_name {
            let found = tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(tag_name));
            match (found, tag_value) {
                (None, _) => return false,
                (Some((_, v)), Some(want)) if v.as_str() != Some(want.as_str()) => return false,
                _ => {}
            }
        }
        self.clauses.iter().all(|c| match c {
            Clause::ResourceType(t) => t.eq_ignore_ascii_case(type_),
            Clause::Name(n) => n.eq_ignore_ascii_case(name),
            Clause::Location(l) => l.eq_ignore_ascii_case(location),
            Clause::TagName(_) | Clause::TagValue(_) => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn tag_filters_match_like_arm() {
        let f =
            Filter::parse("tagName eq 'cloudtest:run-id' and tagValue eq 'r''1'").expect("parses");
        assert!(f.matches("x", "T", "l", &tags(json!({"CloudTest:Run-Id": "r'1"}))));
        assert!(!f.matches("x", "T", "l", &tags(json!({"cloudtest:run-id": "R'1"}))));
        assert!(!f.matches("x", "T", "l", &tags(json!({"other": "r'1"}))));
        let only_name = Filter::parse("tagname eq 'k'").expect("parses");
        assert!(only_name.matches("x", "T", "l", &tags(json!({"k": ""}))));
        let typed = Filter::parse("resourceType eq 'Microsoft.Compute/disks'").expect("parses");
        assert!(typed.matches("d", "microsoft.compute/DISKS", "l", &Map::new()));
    }

    #[test]
    fn rejects_what_arm_rejects() {
        for bad in [
            "tagValue eq 'v'",
            "tagName ne 'k'",
            "tagName eq 'k' or name eq 'n'",
            "foo eq 'x'",
            "tagName eq 'k",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
