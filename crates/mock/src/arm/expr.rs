//! The ARM template expression language: which strings are expressions, and a tokenizer plus
//! recursive-descent parser turning `[concat(parameters('a'), '-x')[0].b]` into an [`Expr`].
//!
//! Grammar (what ARM accepts, minus user-defined namespaces):
//! `expr := primary ( '.' ident | '[' expr ']' )*`,
//! `primary := 'string' | integer | ident '(' [expr (',' expr)*] ')' | true | false | null`.

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    Call { name: String, args: Vec<Expr> },
    Property { target: Box<Expr>, name: String },
    Index { target: Box<Expr>, index: Box<Expr> },
}

/// What a JSON string in a template means.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateString<'a> {
    /// Plain text (`[[` at the start escapes a literal `[`).
    Literal(std::borrow::Cow<'a, str>),
    /// The text between the outer brackets of `[...]`.
    Expression(&'a str),
}

/// Classifies a template string the way ARM does: `[...]` is an expression, `[[...` a literal
/// that starts with `[`, anything else literal text.
pub fn classify(s: &str) -> TemplateString<'_> {
    if let Some(rest) = s.strip_prefix("[[") {
        return TemplateString::Literal(format!("[{rest}").into());
    }
    match s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Some(inner) => TemplateString::Expression(inner),
        None => TemplateString::Literal(s.into()),
    }
}

/// A syntax error, worded like ARM's `InvalidTemplate` parse errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Unable to parse language expression '{expression}': {reason} at position '{position}'.")]
pub struct ParseError {
    pub expression: String,
    pub position: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Ident(String),
    Str(String),
    Int(i64),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::LParen => f.write_str("'('"),
            Token::RParen => f.write_str("')'"),
            Token::LBracket => f.write_str("'['"),
            Token::RBracket => f.write_str("']'"),
            Token::Comma => f.write_str("','"),
            Token::Dot => f.write_str("'.'"),
            Token::Ident(s) => write!(f, "identifier '{s}'"),
            Token::Str(s) => write!(f, "string '{s}'"),
            Token::Int(n) => write!(f, "integer '{n}'"),
        }
    }
}

fn tokenize(src: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let err = |position: usize, reason: String| ParseError {
        expression: src.to_string(),
        position,
        reason,
    };
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | '[' | ']' | ',' | '.' => {
                out.push((
                    pos,
                    match c {
                        '(' => Token::LParen,
                        ')' => Token::RParen,
                        '[' => Token::LBracket,
                        ']' => Token::RBracket,
                        ',' => Token::Comma,
                        _ => Token::Dot,
                    },
                ));
                i += 1;
            }
            '\'' => {
                // 'it''s' is the string it's.
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(err(pos, "the string literal is not terminated".into()))
                        }
                        Some((_, '\'')) if matches!(chars.get(i + 1), Some((_, '\''))) => {
                            text.push('\'');
                            i += 2;
                        }
                        Some((_, '\'')) => {
                            i += 1;
                            break;
                        }
                        Some((_, ch)) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((pos, Token::Str(text)));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(|(_, d)| d.is_ascii_digit()) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().map(|(_, ch)| ch).collect();
                let n = text
                    .parse::<i64>()
                    .map_err(|_| err(pos, format!("the integer '{text}' is out of range")))?;
                out.push((pos, Token::Int(n)));
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|(_, d)| d.is_alphanumeric() || *d == '_' || *d == '$')
                {
                    i += 1;
                }
                out.push((
                    pos,
                    Token::Ident(chars[start..i].iter().map(|(_, ch)| ch).collect()),
                ));
            }
            other => return Err(err(pos, format!("the character '{other}' is not expected"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<(usize, Token)>,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, reason: String) -> ParseError {
        let position = self.tokens.get(self.at).map_or(self.src.len(), |(p, _)| *p);
        ParseError {
            expression: self.src.to_string(),
            position,
            reason,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).map(|(_, t)| t.clone());
        self.at += 1;
        t
    }

    fn expect(&mut self, want: Token) -> Result<(), ParseError> {
        match self.peek() {
            Some(t) if *t == want => {
                self.at += 1;
                Ok(())
            }
            Some(t) => Err(self.error(format!("expected {want} but found {t}"))),
            None => Err(self.error(format!("expected {want} but the expression ended"))),
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Ident(name)) => {
                            e = Expr::Property {
                                target: Box::new(e),
                                name,
                            }
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.error("a property name must follow '.'".into()));
                        }
                    }
                }
                Some(Token::LBracket) => {
                    self.at += 1;
                    let index = self.expr()?;
                    self.expect(Token::RBracket)?;
                    e = Expr::Index {
                        target: Box::new(e),
                        index: Box::new(index),
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Int(n)) => Ok(Expr::Int(n)),
            Some(Token::Ident(name)) => {
                if self.peek() != Some(&Token::LParen) {
                    return match name.to_ascii_lowercase().as_str() {
                        "true" => Ok(Expr::Bool(true)),
                        "false" => Ok(Expr::Bool(false)),
                        "null" => Ok(Expr::Null),
                        _ => {
                            self.at -= 1;
                            Err(self
                                .error(format!("the identifier '{name}' must be a function call")))
                        }
                    };
                }
                self.at += 1;
                let mut args = Vec::new();
                if self.peek() == Some(&Token::RParen) {
                    self.at += 1;
                    return Ok(Expr::Call { name, args });
                }
                loop {
                    args.push(self.expr()?);
                    match self.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::RParen) => break,
                        Some(t) => {
                            self.at -= 1;
                            return Err(self.error(format!("expected ',' or ')' but found {t}")));
                        }
                        None => {
                            return Err(
                                self.error("the function call is not closed with ')'".into())
                            )
                        }
                    }
                }
                Ok(Expr::Call { name, args })
            }
            Some(t) => {
                self.at -= 1;
                Err(self.error(format!("{t} cannot start an expression")))
            }
            None => Err(self.error("the expression is empty".into())),
        }
    }
}

/// Parses the text between the outer brackets of a template expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser { src, tokens, at: 0 };
    let e = parser.expr()?;
    if let Some(t) = parser.peek() {
        let t = t.clone();
        return Err(parser.error(format!("unexpected {t} after the end of the expression")));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        Expr::Call {
            name: name.into(),
            args,
        }
    }

    #[test]
    fn classifies_template_strings() {
        assert_eq!(
            classify("[parameters('a')]"),
            TemplateString::Expression("parameters('a')")
        );
        assert_eq!(classify("[[not]"), TemplateString::Literal("[not]".into()));
        assert_eq!(classify("plain"), TemplateString::Literal("plain".into()));
        assert_eq!(classify("[half"), TemplateString::Literal("[half".into()));
    }

    #[test]
    fn parses_table() {
        let cases: Vec<(&str, Expr)> = vec![
            ("'it''s'", Expr::Str("it's".into())),
            ("-42", Expr::Int(-42)),
            ("true", Expr::Bool(true)),
            ("resourceGroup()", call("resourceGroup", vec![])),
            (
                "concat('a', parameters('b'))",
                call(
                    "concat",
                    vec![
                        Expr::Str("a".into()),
                        call("parameters", vec![Expr::Str("b".into())]),
                    ],
                ),
            ),
            (
                "reference(resourceId('T/x', 'n')).ipAddress",
                Expr::Property {
                    target: Box::new(call(
                        "reference",
                        vec![call(
                            "resourceId",
                            vec![Expr::Str("T/x".into()), Expr::Str("n".into())],
                        )],
                    )),
                    name: "ipAddress".into(),
                },
            ),
            (
                "x().statuses[0].message",
                Expr::Property {
                    target: Box::new(Expr::Index {
                        target: Box::new(Expr::Property {
                            target: Box::new(call("x", vec![])),
                            name: "statuses".into(),
                        }),
                        index: Box::new(Expr::Int(0)),
                    }),
                    name: "message".into(),
                },
            ),
            (
                " variables( 'v' ) [ 'k' ] ",
                Expr::Index {
                    target: Box::new(call("variables", vec![Expr::Str("v".into())])),
                    index: Box::new(Expr::Str("k".into())),
                },
            ),
        ];
        for (src, want) in cases {
            assert_eq!(
                parse(src).unwrap_or_else(|e| panic!("{src}: {e}")),
                want,
                "{src}"
            );
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for src in [
            "",
            "concat('a'",
            "'open",
            "a.b",
            "f(1,)",
            "f() g()",
            "f().",
            "f(1 2)",
            "#",
        ] {
            assert!(parse(src).is_err(), "{src} must not parse");
        }
        let e = parse("concat('a' 'b')").expect_err("missing comma");
        assert!(e.to_string().contains("expected ',' or ')'"), "{e}");
    }
}
