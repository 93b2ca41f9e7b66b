//! Compiled request matchers: Istio's `StringMatch` and `HTTPMatchRequest`.

use http::request::Parts;
use regex::Regex;
use remora_proto::pb;

use crate::ConfigError;

/// A compiled `StringMatch`. Regexes match the whole value, as in Istio (RE2
/// full match).
#[derive(Debug, Clone)]
pub enum StringMatcher {
    /// The value equals this string.
    Exact(String),
    /// The value starts with this string.
    Prefix(String),
    /// The value matches this anchored regex.
    Regex(Regex),
}

impl StringMatcher {
    /// Compiles a proto `StringMatch`; `case_insensitive` lower-cases exact and
    /// prefix patterns (the value is lower-cased by the caller) and makes
    /// regexes case-insensitive. `field` names the match in errors.
    pub fn compile(
        m: &pb::StringMatch,
        case_insensitive: bool,
        field: &str,
    ) -> Result<Self, ConfigError> {
        use pb::string_match::Kind;
        let fold = |s: &str| {
            if case_insensitive {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        match &m.kind {
            Some(Kind::Exact(s)) => Ok(Self::Exact(fold(s))),
            Some(Kind::Prefix(s)) => Ok(Self::Prefix(fold(s))),
            Some(Kind::Regex(re)) => regex::RegexBuilder::new(&format!("^(?:{re})$"))
                .case_insensitive(case_insensitive)
                .size_limit(remora_proto::REGEX_SIZE_LIMIT)
                .build()
                .map(Self::Regex)
                .map_err(|e| ConfigError::Regex {
                    field: field.to_owned(),
                    error: e.to_string(),
                }),
            None => Err(ConfigError::EmptyStringMatch {
                field: field.to_owned(),
            }),
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(s) => value.starts_with(s.as_str()),
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// A named header or query parameter that must be present and, if
/// `value` is set, match it.
#[derive(Debug, Clone)]
pub(crate) struct KeyMatcher {
    name: String,
    value: Option<StringMatcher>,
}

impl KeyMatcher {
    fn compile(m: &pb::KeyMatch, field: &str) -> Result<Self, ConfigError> {
        let value = m
            .value
            .as_ref()
            .map(|v| StringMatcher::compile(v, false, &format!("{field}.{}", m.name)))
            .transpose()?;
        Ok(Self {
            name: m.name.clone(),
            value,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (value, &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(m)) => m.matches(v),
        }
    }
}

/// One compiled `match[]` entry: every condition present must hold.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    uri: Option<StringMatcher>,
    ignore_uri_case: bool,
    headers: Vec<KeyMatcher>,
    authority: Option<StringMatcher>,
    method: Option<StringMatcher>,
    query_params: Vec<KeyMatcher>,
}

impl RequestMatch {
    /// Compiles a proto `RouteMatch`; `field` names it in errors.
    pub fn compile(m: &pb::RouteMatch, field: &str) -> Result<Self, ConfigError> {
        let one = |sm: &Option<pb::StringMatch>, name: &str, fold: bool| {
            sm.as_ref()
                .map(|sm| StringMatcher::compile(sm, fold, &format!("{field}.{name}")))
                .transpose()
        };
        let keys = |ks: &[pb::KeyMatch], name: &str| {
            ks.iter()
                .map(|k| KeyMatcher::compile(k, &format!("{field}.{name}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            uri: one(&m.uri, "uri", m.ignore_uri_case)?,
            ignore_uri_case: m.ignore_uri_case,
            headers: keys(&m.headers, "headers")?,
            authority: one(&m.authority, "authority", false)?,
            method: one(&m.method, "method", false)?,
            query_params: keys(&m.query_params, "queryParams")?,
        })
    }

    /// Whether the request matches every condition.
    pub fn matches(&self, req: &Parts) -> bool {
        if let Some(uri) = &self.uri {
            let path = req.uri.path();
            let ok = if self.ignore_uri_case && path.bytes().any(|b| b.is_ascii_uppercase()) {
                uri.matches(&path.to_ascii_lowercase())
            } else {
                uri.matches(path)
            };
            if !ok {
                return false;
            }
        }
        if let Some(method) = &self.method
            && !method.matches(req.method.as_str())
        {
            return false;
        }
        if let Some(authority) = &self.authority
            && !authority.matches(crate::host::authority(req).unwrap_or(""))
        {
            return false;
        }
        for h in &self.headers {
            let value = req
                .headers
                .get(h.name.as_str())
                .and_then(|v| v.to_str().ok());
            if !h.matches(value) {
                return false;
            }
        }
        if !self.query_params.is_empty() {
            let query = req.uri.query().unwrap_or("");
            for q in &self.query_params {
                if !q.matches(query_param(query, &q.name)) {
                    return false;
                }
            }
        }
        true
    }
}

/// The raw value of the first `name=value` pair in `query` (`""` for a bare `name`).
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::string_match::Kind;

    fn sm(kind: Kind) -> Option<pb::StringMatch> {
        Some(pb::StringMatch { kind: Some(kind) })
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn uri_exact_prefix_regex() {
        let exact = RequestMatch::compile(
            &pb::RouteMatch {
                uri: sm(Kind::Exact("/a".into())),
                ..Default::default()
            },
            "m",
        )
        .unwrap();
        assert!(exact.matches(&parts("GET", "/a?x=1", &[])));
        assert!(!exact.matches(&parts("GET", "/ab", &[])));
        let prefix = RequestMatch::compile(
            &pb::RouteMatch {
                uri: sm(Kind::Prefix("/api/".into())),
                ..Default::default()
            },
            "m",
        )
        .unwrap();
        assert!(prefix.matches(&parts("GET", "/api/x", &[])));
        assert!(!prefix.matches(&parts("GET", "/apix", &[])));
        let regex = RequestMatch::compile(
            &pb::RouteMatch {
                uri: sm(Kind::Regex("/v[0-9]+/.*".into())),
                ..Default::default()
            },
            "m",
        )
        .unwrap();
        assert!(regex.matches(&parts("GET", "/v2/items", &[])));
        assert!(
            !regex.matches(&parts("GET", "/x/v2/items", &[])),
            "regex must match the whole path"
        );
    }

    #[test]
    fn ignore_uri_case_folds_path_and_pattern() {
        let m = pb::RouteMatch {
            uri: sm(Kind::Prefix("/Api".into())),
            ignore_uri_case: true,
            ..Default::default()
        };
        let m = RequestMatch::compile(&m, "m").unwrap();
        assert!(m.matches(&parts("GET", "/API/x", &[])));
        assert!(m.matches(&parts("GET", "/api/x", &[])));
    }

    #[test]
    fn headers_present_exact_prefix_regex_are_anded() {
        let m = pb::RouteMatch {
            headers: vec![
                pb::KeyMatch {
                    name: "end-user".into(),
                    value: sm(Kind::Exact("jason".into())),
                },
                pb::KeyMatch {
                    name: "x-present".into(),
                    value: None,
                },
                pb::KeyMatch {
                    name: "x-prefix".into(),
                    value: sm(Kind::Prefix("ab".into())),
                },
                pb::KeyMatch {
                    name: "x-re".into(),
                    value: sm(Kind::Regex("[0-9]+".into())),
                },
            ],
            ..Default::default()
        };
        let m = RequestMatch::compile(&m, "m").unwrap();
        let all = [
            ("end-user", "jason"),
            ("x-present", ""),
            ("x-prefix", "abc"),
            ("x-re", "42"),
        ];
        assert!(m.matches(&parts("GET", "/", &all)));
        for skip in 0..all.len() {
            let some: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, h)| *h)
                .collect();
            assert!(
                !m.matches(&parts("GET", "/", &some)),
                "missing header {skip} must not match"
            );
        }
        assert!(!m.matches(&parts(
            "GET",
            "/",
            &[
                ("end-user", "jason"),
                ("x-present", ""),
                ("x-prefix", "abc"),
                ("x-re", "4a")
            ]
        )));
    }

    #[test]
    fn method_authority_and_query() {
        let m = pb::RouteMatch {
            method: sm(Kind::Exact("POST".into())),
            authority: sm(Kind::Prefix("reviews".into())),
            query_params: vec![
                pb::KeyMatch {
                    name: "debug".into(),
                    value: sm(Kind::Exact("1".into())),
                },
                pb::KeyMatch {
                    name: "trace".into(),
                    value: None,
                },
            ],
            ..Default::default()
        };
        let m = RequestMatch::compile(&m, "m").unwrap();
        assert!(m.matches(&parts(
            "POST",
            "/?debug=1&trace",
            &[("host", "reviews:9080")]
        )));
        assert!(!m.matches(&parts("GET", "/?debug=1&trace", &[("host", "reviews")])));
        assert!(!m.matches(&parts("POST", "/?debug=2&trace", &[("host", "reviews")])));
        assert!(!m.matches(&parts("POST", "/?debug=1", &[("host", "reviews")])));
        assert!(!m.matches(&parts("POST", "/?debug=1&trace", &[("host", "ratings")])));
    }

    #[test]
    fn bad_regex_is_an_error_naming_the_field() {
        let m = pb::RouteMatch {
            uri: sm(Kind::Regex("(".into())),
            ..Default::default()
        };
        let err = RequestMatch::compile(&m, "route r match[0]").unwrap_err();
        assert!(
            matches!(err, ConfigError::Regex { ref field, .. } if field == "route r match[0].uri"),
            "{err}"
        );
    }
}
