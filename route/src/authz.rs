//! AuthorizationPolicy on the inbound path, Istio's evaluation: compiled
//! once per snapshot into an [`Authorizer`], then asked once per request.
//!
//! 1. DENY policies first: any matching rule denies.
//! 2. ALLOW policies: none means allow; otherwise the request is allowed
//!    only if some rule of some ALLOW policy matches.
//!
//! A policy with no rules matches nothing (so an ALLOW policy with no rules
//! denies everything). A rule matches when `from` matches (any source;
//! empty = any) and `to` matches (any operation; empty = any). Within a
//! source or operation every non-empty field must match, and within a field
//! any value may. Values match exactly, by `prefix*`, by `*suffix`, or `*`
//! (any non-empty value). A plaintext peer has no principal and no
//! namespace: `principals` and `namespaces` never match it,
//! `notPrincipals: ["*"]` does.

use std::fmt;

use remora_certs::SpiffeId;
use remora_proto::pb;

/// Why a request was refused; the text is the 403 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// A rule of this DENY policy matched.
    #[error("RBAC: access denied by AuthorizationPolicy {policy}")]
    ByPolicy {
        /// The policy, `<namespace>/<name>`.
        policy: String,
    },
    /// ALLOW policies exist and none of their rules matched.
    #[error("RBAC: access denied: no ALLOW policy matched")]
    NoAllowMatched,
}

/// A policy value that cannot be compiled; the text names where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inbound AuthorizationPolicy {policy} {field}: {error}")]
pub struct AuthzError {
    /// The policy, `<namespace>/<name>`.
    pub policy: String,
    /// Where in the policy, e.g. `rules[0].to[1].ports`.
    pub field: String,
    /// What is wrong.
    pub error: String,
}

/// What a rule can look at: the peer and the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestAttributes<'a> {
    /// The peer's principal, `<td>/ns/<ns>/sa/<sa>`; `None` for a peer
    /// without a verified certificate.
    pub principal: Option<&'a str>,
    /// The peer's namespace, from its SPIFFE ID.
    pub namespace: Option<&'a str>,
    /// The request method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The host from `:authority` or `Host`, without port (any case).
    pub host: &'a str,
    /// The app port the request is for.
    pub port: u16,
    /// An opaque TCP connection, not a request: HTTP-only fields
    /// (methods, paths, hosts) cannot match it; an ALLOW rule that has
    /// them is skipped and a DENY rule ignores them (Istio's rule, which
    /// errs on the side of denying).
    pub tcp: bool,
}

impl<'a> RequestAttributes<'a> {
    /// The principal and namespace of a peer identity (none for plaintext).
    pub fn with_peer(mut self, identity: Option<&'a SpiffeId>) -> Self {
        self.principal = identity.map(|id| id.as_str().trim_start_matches("spiffe://"));
        self.namespace = identity.and_then(SpiffeId::namespace);
        self
    }
}

/// The compiled AuthorizationPolicies of a workload.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    deny: Vec<Policy>,
    allow: Vec<Policy>,
}

impl Authorizer {
    /// Compiles the DENY and ALLOW policies of a snapshot's inbound policy.
    pub fn build(
        deny: &[pb::AuthorizationPolicy],
        allow: &[pb::AuthorizationPolicy],
    ) -> Result<Self, AuthzError> {
        Ok(Self {
            deny: deny.iter().map(Policy::build).collect::<Result<_, _>>()?,
            allow: allow.iter().map(Policy::build).collect::<Result<_, _>>()?,
        })
    }

    /// Whether there is any policy at all (without one, every request passes).
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    /// Decides on one request, DENY policies first.
    pub fn check(&self, req: &RequestAttributes<'_>) -> Result<(), Denied> {
        if let Some(policy) = self.deny.iter().find(|p| p.matches(req, true)) {
            return Err(Denied::ByPolicy {
                policy: policy.name.clone(),
            });
        }
        if self.allow.is_empty() || self.allow.iter().any(|p| p.matches(req, false)) {
            Ok(())
        } else {
            Err(Denied::NoAllowMatched)
        }
    }
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    /// OR'd; empty matches nothing.
    rules: Vec<Rule>,
}

impl Policy {
    fn build(p: &pb::AuthorizationPolicy) -> Result<Self, AuthzError> {
        let rules = p
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::build(r).map_err(|(field, error)| error_at(p, i, field, error)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: p.name.clone(),
            rules,
        })
    }

    fn matches(&self, req: &RequestAttributes<'_>, deny: bool) -> bool {
        self.rules.iter().any(|r| r.matches(req, deny))
    }
}

fn error_at(p: &pb::AuthorizationPolicy, rule: usize, field: String, error: String) -> AuthzError {
    AuthzError {
        policy: p.name.clone(),
        field: format!("rules[{rule}].{field}"),
        error,
    }
}

#[derive(Debug, Clone)]
struct Rule {
    from: Vec<Source>,
    to: Vec<Operation>,
}

impl Rule {
    fn build(r: &pb::AuthorizationRule) -> Result<Self, (String, String)> {
        let from = r.from.iter().map(Source::build).collect();
        let to =
            r.to.iter()
                .enumerate()
                .map(|(i, o)| Operation::build(o).map_err(|(f, e)| (format!("to[{i}].{f}"), e)))
                .collect::<Result<_, _>>()?;
        Ok(Self { from, to })
    }

    fn matches(&self, req: &RequestAttributes<'_>, deny: bool) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(req)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(req, deny)))
    }
}

#[derive(Debug, Clone)]
struct Source {
    principals: Field,
    namespaces: Field,
}

impl Source {
    fn build(s: &pb::AuthorizationSource) -> Self {
        Self {
            principals: Field::new(&s.principals, &s.not_principals, false),
            namespaces: Field::new(&s.namespaces, &s.not_namespaces, false),
        }
    }

    fn matches(&self, req: &RequestAttributes<'_>) -> bool {
        self.principals.matches(req.principal) && self.namespaces.matches(req.namespace)
    }
}

#[derive(Debug, Clone)]
struct Operation {
    methods: Field,
    paths: Field,
    hosts: Field,
    ports: Vec<u16>,
    not_ports: Vec<u16>,
}

impl Operation {
    fn build(o: &pb::AuthorizationOperation) -> Result<Self, (&'static str, String)> {
        Ok(Self {
            methods: Field::new(&o.methods, &o.not_methods, false),
            paths: Field::new(&o.paths, &o.not_paths, false),
            hosts: Field::new(&o.hosts, &o.not_hosts, true),
            ports: ports(&o.ports).map_err(|e| ("ports", e))?,
            not_ports: ports(&o.not_ports).map_err(|e| ("not_ports", e))?,
        })
    }

    fn matches(&self, req: &RequestAttributes<'_>, deny: bool) -> bool {
        let ports = (self.ports.is_empty() || self.ports.contains(&req.port))
            && !self.not_ports.contains(&req.port);
        if req.tcp {
            let http_only = [&self.methods, &self.paths, &self.hosts]
                .iter()
                .any(|f| !f.is_empty());
            return ports && (deny || !http_only);
        }
        self.methods.matches(Some(req.method))
            && self.paths.matches(Some(req.path))
            && self.hosts.matches(Some(req.host))
            && (self.ports.is_empty() || self.ports.contains(&req.port))
            && !self.not_ports.contains(&req.port)
    }
}

fn ports(values: &[String]) -> Result<Vec<u16>, String> {
    values
        .iter()
        .map(|v| match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("`{v}` is not a port (1-65535)")),
        })
        .collect()
}

/// One attribute's values and `not` values.
#[derive(Debug, Clone)]
struct Field {
    any_of: Vec<Pattern>,
    none_of: Vec<Pattern>,
}

impl Field {
    fn new(values: &[String], not_values: &[String], ignore_case: bool) -> Self {
        let compile = |v: &[String]| v.iter().map(|s| Pattern::new(s, ignore_case)).collect();
        Self {
            any_of: compile(values),
            none_of: compile(not_values),
        }
    }

    /// Whether the rule names this field at all.
    fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }

    /// An absent value matches no value (so only the `not` side can hold).
    fn matches(&self, value: Option<&str>) -> bool {
        let hit =
            |patterns: &[Pattern]| value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)));
        (self.any_of.is_empty() || hit(&self.any_of)) && !hit(&self.none_of)
    }
}

/// `exact`, `prefix*`, `*suffix`, or `*` (present and non-empty).
#[derive(Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Present,
}

impl Pattern {
    fn new(value: &str, ignore_case: bool) -> Self {
        if value == "*" {
            Self::Present
        } else if let Some(prefix) = value.strip_suffix('*') {
            Self::Prefix(prefix.to_owned(), ignore_case)
        } else if let Some(suffix) = value.strip_prefix('*') {
            Self::Suffix(suffix.to_owned(), ignore_case)
        } else {
            Self::Exact(value.to_owned(), ignore_case)
        }
    }

    fn matches(&self, value: &str) -> bool {
        let eq = |a: &str, b: &str, ignore_case: bool| {
            if ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            Self::Present => !value.is_empty(),
            Self::Exact(s, i) => eq(value, s, *i),
            Self::Prefix(s, i) => value.get(..s.len()).is_some_and(|head| eq(head, s, *i)),
            Self::Suffix(s, i) => value
                .len()
                .checked_sub(s.len())
                .and_then(|at| value.get(at..))
                .is_some_and(|tail| eq(tail, s, *i)),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Present => f.write_str("*"),
            Self::Exact(s, _) => write!(f, "{s}"),
            Self::Prefix(s, _) => write!(f, "{s}*"),
            Self::Suffix(s, _) => write!(f, "*{s}"),
        }
    }
}

#[cfg(test)]
mod tests;
