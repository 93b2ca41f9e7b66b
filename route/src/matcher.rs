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
mod tests;
