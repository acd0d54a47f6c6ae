//! Path templates of `google.api.http` rules (`/api/runs/{run_id}/tasks/{task_id}/logs`):
//! parsing one, and matching a request path against it.
//!
//! Only the subset Petit's contract uses is supported: literal segments and whole-segment
//! `{field.path}` variables. The wider grpc-gateway syntax (`*`, `**`, `{name=a/*}`,
//! `:verb`) is refused when the route table is built, so an unsupported rule can't
//! silently route somewhere unexpected.

use std::fmt;

/// One `/`-separated piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal the request's segment exactly.
    Literal(String),
    /// `{field}`: one non-empty request segment, bound to a field (path) of the request
    /// message.
    Variable(String),
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    text: String,
    segments: Vec<Segment>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("path template {0:?} does not start with '/'")]
    NotAbsolute(String),
    #[error("path template {0:?} has an empty segment")]
    EmptySegment(String),
    #[error(
        "path template {template:?}: segment {segment:?} is not supported \
         (only literals and whole-segment {{field}} variables are)"
    )]
    Unsupported { template: String, segment: String },
    #[error("path template {template:?} binds field {field:?} twice")]
    DuplicateVariable { template: String, field: String },
}

impl RouteTemplate {
    pub fn parse(template: &str) -> Result<RouteTemplate, TemplateError> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err(TemplateError::NotAbsolute(template.to_string()));
        };
        let mut segments = Vec::new();
        for piece in rest.split('/') {
            if piece.is_empty() {
                return Err(TemplateError::EmptySegment(template.to_string()));
            }
            let unsupported = || TemplateError::Unsupported {
                template: template.to_string(),
                segment: piece.to_string(),
            };
            let segment = match piece.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(field) if is_field_path(field) => Segment::Variable(field.to_string()),
                Some(_) => return Err(unsupported()),
                None if piece.contains(['{', '}', '*', '=']) => return Err(unsupported()),
                None => Segment::Literal(piece.to_string()),
            };
            if let Segment::Variable(field) = &segment {
                if segments.contains(&segment) {
                    return Err(TemplateError::DuplicateVariable {
                        template: template.to_string(),
                        field: field.clone(),
                    });
                }
            }
            segments.push(segment);
        }
        Ok(RouteTemplate {
            text: template.to_string(),
            segments,
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The field paths bound by the template's variables, in template order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Variable(field) => Some(field.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The first segment when it is a literal (`api` for `/api/jobs`): the REST router
    /// claims `/{first}/…` so that it can answer unknown paths there itself.
    pub fn first_literal(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(text)) => Some(text),
            _ => None,
        }
    }

    /// Orders templates so that, of two that match the same path, the one with a literal
    /// where the other has a variable comes first (`/jobs/search` before `/jobs/{id}`).
    pub fn specificity_key(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Variable(_) => 1,
            })
            .collect()
    }

    /// Matches a request path (still percent-encoded). On a match, each variable's field
    /// path with the raw segment it captured, in template order. Decoding is left to the
    /// caller so that a bad escape is a 400 on a route that exists, not a 404.
    pub fn matches<'t, 'p>(&'t self, path: &'p str) -> Option<Vec<(&'t str, &'p str)>> {
        let rest = path.strip_prefix('/')?;
        let mut pieces = rest.split('/');
        let mut bound = Vec::new();
        for segment in &self.segments {
            let piece = pieces.next()?;
            match segment {
                Segment::Literal(text) if text == piece => {}
                Segment::Literal(_) => return None,
                Segment::Variable(_) if piece.is_empty() => return None,
                Segment::Variable(field) => bound.push((field.as_str(), piece)),
            }
        }
        match pieces.next() {
            Some(_) => None,
            None => Some(bound),
        }
    }
}

impl fmt::Display for RouteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `ident(.ident)*`, the only variable form the templates use.
fn is_field_path(text: &str) -> bool {
    text.split('.').all(|ident| {
        let mut chars = ident.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.to_string())
    }

    fn var(s: &str) -> Segment {
        Segment::Variable(s.to_string())
    }

    #[test]
    fn parses_literals_and_variables() {
        let cases: &[(&str, Vec<Segment>)] = &[
            ("/api/health", vec![lit("api"), lit("health")]),
            (
                "/api/jobs/{job_id}",
                vec![lit("api"), lit("jobs"), var("job_id")],
            ),
            (
                "/api/runs/{run_id}/tasks/{task_id}/logs",
                vec![
                    lit("api"),
                    lit("runs"),
                    var("run_id"),
                    lit("tasks"),
                    var("task_id"),
                    lit("logs"),
                ],
            ),
            ("/v1/{parent.name}", vec![lit("v1"), var("parent.name")]),
            (
                "/v1/things:batchGet",
                vec![lit("v1"), lit("things:batchGet")],
            ),
        ];
        for (text, want) in cases {
            let template = RouteTemplate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(template.segments(), want.as_slice(), "{text}");
            assert_eq!(template.to_string(), *text);
        }
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        let cases = [
            ("api/jobs", "does not start with '/'"),
            ("", "does not start with '/'"),
            ("/", "empty segment"),
            ("/api//jobs", "empty segment"),
            ("/api/jobs/", "empty segment"),
            ("/api/*", "not supported"),
            ("/api/**", "not supported"),
            ("/api/{name=jobs/*}", "not supported"),
            ("/api/{job_id}:cancel", "not supported"),
            ("/api/{}", "not supported"),
            ("/api/{1abc}", "not supported"),
            ("/api/{a..b}", "not supported"),
            ("/api/x{y}", "not supported"),
            ("/api/{id}/{id}", "twice"),
        ];
        for (text, want) in cases {
            let err = RouteTemplate::parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn matches_paths() {
        type Bound = Option<Vec<(&'static str, &'static str)>>;
        let cases: &[(&str, &str, Bound)] = &[
            ("/api/jobs", "/api/jobs", Some(vec![])),
            ("/api/jobs", "/api/jobs/", None),
            ("/api/jobs", "/api/job", None),
            ("/api/jobs", "/api", None),
            ("/api/jobs", "api/jobs", None),
            ("/api/jobs", "/api/jobs/x", None),
            (
                "/api/jobs/{job_id}",
                "/api/jobs/hello",
                Some(vec![("job_id", "hello")]),
            ),
            (
                "/api/jobs/{job_id}",
                "/api/jobs/a%2Fb",
                Some(vec![("job_id", "a%2Fb")]),
            ),
            ("/api/jobs/{job_id}", "/api/jobs/", None),
            ("/api/jobs/{job_id}", "/api/jobs", None),
            ("/api/jobs/{job_id}", "/api/jobs/a/b", None),
            (
                "/api/jobs/{job_id}/trigger",
                "/api/jobs/x/trigger",
                Some(vec![("job_id", "x")]),
            ),
            ("/api/jobs/{job_id}/trigger", "/api/jobs/x/runs", None),
            ("/api/jobs/{job_id}/trigger", "/api/jobs//trigger", None),
            (
                "/api/runs/{run_id}/tasks/{task_id}/logs",
                "/api/runs/r1/tasks/t%201/logs",
                Some(vec![("run_id", "r1"), ("task_id", "t%201")]),
            ),
            (
                "/api/runs/{run_id}/tasks/{task_id}/logs",
                "/api/runs/r1/tasks/t1",
                None,
            ),
        ];
        for (template, path, want) in cases {
            let template = RouteTemplate::parse(template).expect(template);
            assert_eq!(&template.matches(path), want, "{template} vs {path}");
        }
    }

    #[test]
    fn literals_sort_before_variables() {
        let mut templates: Vec<RouteTemplate> =
            ["/api/{a}/x", "/api/jobs/{id}", "/api/jobs/search"]
                .into_iter()
                .map(|t| RouteTemplate::parse(t).expect(t))
                .collect();
        templates.sort_by_key(RouteTemplate::specificity_key);
        let order: Vec<String> = templates.iter().map(ToString::to_string).collect();
        assert_eq!(order, ["/api/jobs/search", "/api/jobs/{id}", "/api/{a}/x"]);
    }

    #[test]
    fn first_literal_and_variables() {
        let template = RouteTemplate::parse("/api/runs/{run_id}/tasks/{task_id}/logs").unwrap();
        assert_eq!(template.first_literal(), Some("api"));
        assert_eq!(
            template.variables().collect::<Vec<_>>(),
            ["run_id", "task_id"]
        );
        let template = RouteTemplate::parse("/{name}").unwrap();
        assert_eq!(template.first_literal(), None);
    }
}
