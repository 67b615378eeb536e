//! Record filters (triggers): a small text expression a subscription carries
//! (`SubscribeRequest::filter`), parsed and validated here, evaluated by the broker on the
//! partition's owner (`broker/src/filter.rs`).
//!
//! ```text
//! expr  := or
//! or    := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | pred
//! pred  := "key" "=" STRING                      key equals
//!        | "key" "prefix" STRING                 key starts with
//!        | "header" "." NAME "=" STRING          some header NAME has this value
//!        | "header" "." NAME "exists"            some header is named NAME
//!        | "value" ("." NAME)* OP LITERAL        a field of the JSON value: = != < >
//!        | "value" ("." NAME)* "in" "[" LITERAL ("," LITERAL)* "]"
//! NAME  := IDENT | STRING          LITERAL := STRING | NUMBER | true | false | null
//! ```
//!
//! Example: `key prefix "user-" and (value.amount > 100 or header.priority = "high")`.
//! Strings are double-quoted with `\"` and `\\` escapes. `value` alone is the whole JSON value.
//!
//! Limits, checked before anything is built from untrusted text: at most
//! [`FILTER_BYTES_MAX`] bytes, [`FILTER_DEPTH_MAX`] levels of nesting and
//! [`FILTER_NODES_MAX`] predicates and operators. An empty (or all-blank) text is no filter.

/// Longest filter text accepted.
pub const FILTER_BYTES_MAX: usize = 4096;
/// Deepest nesting of parentheses and `not`.
pub const FILTER_DEPTH_MAX: usize = 16;
/// Most predicates and operators in one filter.
pub const FILTER_NODES_MAX: usize = 256;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one holds.
    And(Vec<Filter>),
    /// At least one holds.
    Or(Vec<Filter>),
    /// Does not hold.
    Not(Box<Filter>),
    /// The key is exactly these bytes (a record without a key never matches).
    KeyEquals(Vec<u8>),
    /// The key starts with these bytes.
    KeyPrefix(Vec<u8>),
    /// Some header with this name has this value.
    HeaderEquals(String, Vec<u8>),
    /// Some header has this name.
    HeaderExists(String),
    /// The JSON value's field at `path` compares to the literal. A record whose value is not
    /// JSON, or lacks the field, does not match (`!=` included).
    Value(Vec<String>, Compare, Literal),
    /// The field equals one of the literals.
    ValueIn(Vec<String>, Vec<Literal>),
}

/// A comparison on a JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Equal (numbers by value).
    Eq,
    /// Not equal (the field exists).
    Ne,
    /// Less than (two numbers, or two strings by bytes).
    Lt,
    /// Greater than.
    Gt,
}

/// A JSON scalar in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number (compared as f64).
    Number(f64),
    /// A string.
    String(String),
}

/// Why a filter text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Longer than [`FILTER_BYTES_MAX`].
    #[error("filter of {bytes} bytes; at most {FILTER_BYTES_MAX}")]
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// Nested deeper than [`FILTER_DEPTH_MAX`].
    #[error("filter nested deeper than {FILTER_DEPTH_MAX} levels")]
    TooDeep,
    /// More than [`FILTER_NODES_MAX`] nodes.
    #[error("filter has more than {FILTER_NODES_MAX} predicates and operators")]
    TooLarge,
    /// Not in the grammar.
    #[error("filter syntax at byte {at}: {message}")]
    Syntax {
        /// Byte position in the text.
        at: usize,
        /// What was expected.
        message: String,
    },
}

impl FilterError {
    /// The wire code that reports this error.
    pub fn code(&self) -> crate::ErrorCode {
        crate::ErrorCode::InvalidRequest
    }
}

/// Parses `text`: `Ok(None)` for an empty filter (every record).
pub fn parse(text: &str) -> Result<Option<Filter>, FilterError> {
    if text.len() > FILTER_BYTES_MAX {
        return Err(FilterError::TooLong { bytes: text.len() });
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut p = Parser { tokens, at: 0, nodes: 0, text_len: text.len() };
    let f = p.or(0)?;
    if let Some((pos, t)) = p.tokens.get(p.at) {
        return Err(FilterError::Syntax { at: *pos, message: format!("unexpected {t}") });
    }
    Ok(Some(f))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Str(s) => write!(f, "string {s:?}"),
            Token::Num(n) => write!(f, "number {n}"),
            Token::Sym(s) => write!(f, "'{s}'"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let syntax = |at: usize, m: &str| FilterError::Syntax { at, message: m.to_owned() };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(syntax(start, "unterminated string")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            match bytes.get(i + 1) {
                                Some(&e @ (b'"' | b'\\')) => s.push(e),
                                _ => return Err(syntax(i, "only \\\" and \\\\ escapes")),
                            }
                            i += 2;
                        }
                        Some(&b) => {
                            s.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                let s = String::from_utf8(s).map_err(|_| syntax(start, "string is not UTF-8"))?;
                out.push((start, Token::Str(s)));
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((start, Token::Sym("!=")));
                i += 2;
            }
            b'=' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b',' | b'.' => {
                let sym = match c {
                    b'=' => "=",
                    b'<' => "<",
                    b'>' => ">",
                    b'(' => "(",
                    b')' => ")",
                    b'[' => "[",
                    b']' => "]",
                    b',' => ",",
                    _ => ".",
                };
                out.push((start, Token::Sym(sym)));
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_digit()
                        || matches!(bytes[i], b'.' | b'e' | b'E' | b'+')
                        || (bytes[i] == b'-' && matches!(bytes[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                let n: f64 = text[start..i]
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| syntax(start, "bad number"))?;
                out.push((start, Token::Num(n)));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
                {
                    i += 1;
                }
                out.push((start, Token::Ident(text[start..i].to_owned())));
            }
            _ => return Err(syntax(start, "unexpected character")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    nodes: usize,
    text_len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.text_len, |(p, _)| *p)
    }

    fn error<T>(&self, expected: &str) -> Result<T, FilterError> {
        let found = match self.peek() {
            Some(t) => t.to_string(),
            None => "the end".into(),
        };
        Err(FilterError::Syntax {
            at: self.pos(),
            message: format!("expected {expected}, found {found}"),
        })
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.at += 1;
            return true;
        }
        false
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(s)) if *s == sym) {
            self.at += 1;
            return true;
        }
        false
    }

    fn node(&mut self) -> Result<(), FilterError> {
        self.nodes += 1;
        if self.nodes > FILTER_NODES_MAX {
            return Err(FilterError::TooLarge);
        }
        Ok(())
    }

    /// `depth` counts the parentheses and `not`s around this point (each costs three stack
    /// frames at most).
    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut parts = vec![self.and(depth)?];
        while self.eat_ident("or") {
            self.node()?;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Filter::Or(parts) })
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut parts = vec![self.unary(depth)?];
        while self.eat_ident("and") {
            self.node()?;
            parts.push(self.unary(depth)?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Filter::And(parts) })
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if self
            .peek()
            .is_some_and(|t| matches!(t, Token::Sym("(")) || *t == Token::Ident("not".into()))
            && depth >= FILTER_DEPTH_MAX
        {
            return Err(FilterError::TooDeep);
        }
        if self.eat_ident("not") {
            self.node()?;
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.eat_sym("(") {
            let f = self.or(depth + 1)?;
            if !self.eat_sym(")") {
                return self.error("')'");
            }
            return Ok(f);
        }
        self.node()?;
        if self.eat_ident("key") {
            if self.eat_sym("=") {
                return Ok(Filter::KeyEquals(self.string()?.into_bytes()));
            }
            if self.eat_ident("prefix") {
                return Ok(Filter::KeyPrefix(self.string()?.into_bytes()));
            }
            return self.error("'=' or prefix after key");
        }
        if self.eat_ident("header") {
            if !self.eat_sym(".") {
                return self.error("'.' and a header name");
            }
            let name = self.name()?;
            if self.eat_sym("=") {
                return Ok(Filter::HeaderEquals(name, self.string()?.into_bytes()));
            }
            if self.eat_ident("exists") {
                return Ok(Filter::HeaderExists(name));
            }
            return self.error("'=' or exists after the header name");
        }
        if self.eat_ident("value") {
            let mut path = Vec::new();
            while self.eat_sym(".") {
                path.push(self.name()?);
            }
            let op = if self.eat_sym("=") {
                Compare::Eq
            } else if self.eat_sym("!=") {
                Compare::Ne
            } else if self.eat_sym("<") {
                Compare::Lt
            } else if self.eat_sym(">") {
                Compare::Gt
            } else if self.eat_ident("in") {
                if !self.eat_sym("[") {
                    return self.error("'[' after in");
                }
                let mut list = vec![self.literal()?];
                while self.eat_sym(",") {
                    self.node()?;
                    list.push(self.literal()?);
                }
                if !self.eat_sym("]") {
                    return self.error("',' or ']'");
                }
                return Ok(Filter::ValueIn(path, list));
            } else {
                return self.error("=, !=, <, > or in");
            };
            return Ok(Filter::Value(path, op, self.literal()?));
        }
        self.error("key, header, value, not or '('")
    }

    fn string(&mut self) -> Result<String, FilterError> {
        if let Some(Token::Str(s)) = self.peek() {
            let s = s.clone();
            self.at += 1;
            return Ok(s);
        }
        self.error("a string")
    }

    fn name(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some(Token::Str(s) | Token::Ident(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => self.error("a name"),
        }
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        let lit = match self.peek() {
            Some(Token::Str(s)) => Literal::String(s.clone()),
            Some(Token::Num(n)) => Literal::Number(*n),
            Some(Token::Ident(w)) if w == "true" => Literal::Bool(true),
            Some(Token::Ident(w)) if w == "false" => Literal::Bool(false),
            Some(Token::Ident(w)) if w == "null" => Literal::Null,
            _ => return self.error("a string, number, true, false or null"),
        };
        self.at += 1;
        Ok(lit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_parses_into_the_tree() {
        let f = parse(r#"key prefix "user-" and (value.amount > 100 or header.prio = "high")"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::KeyPrefix(b"user-".to_vec()),
                Filter::Or(vec![
                    Filter::Value(vec!["amount".into()], Compare::Gt, Literal::Number(100.0)),
                    Filter::HeaderEquals("prio".into(), b"high".to_vec()),
                ]),
            ])
        );
        assert_eq!(
            parse(r#"not value."a b".c in ["x", -1.5e2, true, null] or header."x-id" exists"#)
                .unwrap()
                .unwrap(),
            Filter::Or(vec![
                Filter::Not(Box::new(Filter::ValueIn(
                    vec!["a b".into(), "c".into()],
                    vec![
                        Literal::String("x".into()),
                        Literal::Number(-150.0),
                        Literal::Bool(true),
                        Literal::Null
                    ]
                ))),
                Filter::HeaderExists("x-id".into()),
            ])
        );
        assert_eq!(parse(r#"key = "a\"b""#).unwrap(), Some(Filter::KeyEquals(b"a\"b".to_vec())));
        assert_eq!(parse("  ").unwrap(), None);
    }

    #[test]
    fn bad_filters_are_refused_with_where_and_why() {
        for (text, why) in [
            ("key", "'=' or prefix"),
            ("key = 3", "a string"),
            ("value.x >", "a string, number"),
            ("value.x ~ 1", "unexpected character"),
            ("(key = \"a\"", "')'"),
            ("key = \"a\" key = \"b\"", "unexpected"),
            ("header.x", "exists"),
            ("\"open", "unterminated"),
            ("value in [1,", "a string, number"),
            ("bogus", "key, header, value"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert_eq!(e.code(), crate::ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn limits_hold_before_anything_is_built() {
        let long = format!("key = \"{}\"", "a".repeat(FILTER_BYTES_MAX));
        assert!(matches!(parse(&long), Err(FilterError::TooLong { .. })));
        let deep = format!("{}key = \"a\"{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(parse(&deep), Err(FilterError::TooDeep));
        let nots = format!("{}key = \"a\"", "not ".repeat(40));
        assert_eq!(parse(&nots), Err(FilterError::TooDeep));
        let at_limit =
            format!("{}key = \"a\"{}", "(".repeat(FILTER_DEPTH_MAX), ")".repeat(FILTER_DEPTH_MAX));
        assert!(parse(&at_limit).is_ok(), "{FILTER_DEPTH_MAX} levels are allowed");
        let wide = vec!["key = \"a\""; 300].join(" or ");
        assert_eq!(parse(&wide), Err(FilterError::TooLarge));
        let list = format!("value in [{}]", vec!["1"; 300].join(","));
        assert_eq!(parse(&list), Err(FilterError::TooLarge));
    }
}
