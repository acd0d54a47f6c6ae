//! Paging of list RPCs: `page_size` (default 50, at most 500) and an opaque
//! `page_token`. Under the hood a token is the offset of the page, except for a job's
//! runs, whose history grows without bound: their token names the last run of the
//! previous page, and the store seeks past it ([`RunsPage`]), so that page 500 costs
//! what page 1 does.

use chrono::DateTime;
use tonic::Status;

use crate::store::{Run, RunKey, RunPage};

/// Page size when the request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page served; bigger requests are clamped to it.
pub const MAX_PAGE_SIZE: usize = 500;

/// Which slice of a list a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub size: usize,
}

impl Page {
    /// Reads `page_size` and `page_token`. The token is the offset of the page as a
    /// decimal string: opaque to clients, which only echo `next_page_token`.
    pub fn parse(page_size: u32, page_token: &str) -> Result<Page, Status> {
        let size = match usize::try_from(page_size).unwrap_or(MAX_PAGE_SIZE) {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let offset = if page_token.is_empty() {
            0
        } else {
            page_token.parse().map_err(|_| unknown_token(page_token))?
        };
        Ok(Page { offset, size })
    }

    /// The token of the page after this one, when `total` items exist (or at least
    /// `total`, when the caller read one more than a page to find out).
    pub fn next_token(&self, total: usize) -> String {
        let end = self.offset.saturating_add(self.size);
        if total > end {
            end.to_string()
        } else {
            String::new()
        }
    }
}

fn unknown_token(page_token: &str) -> Status {
    Status::invalid_argument(format!(
        "page_token '{page_token}' is not one this server gave out; \
         pass the next_page_token of the previous response, or none for the first page"
    ))
}

/// A page of a job's runs: after the last run of the previous page (the tokens this
/// server gives out), or at an offset (a plain number, as an older server gave out,
/// still honoured so that a client paging through a rolling upgrade goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsPage {
    pub size: usize,
    after: Option<RunKey>,
    offset: usize,
}

/// The prefix of a run token (its version): `r1.SECONDS.NANOS.RUN_ID`.
const RUN_TOKEN: &str = "r1.";

impl RunsPage {
    /// Reads `page_size` and `page_token` as [`Page::parse`] does.
    pub fn parse(page_size: u32, page_token: &str) -> Result<RunsPage, Status> {
        let Some(key) = page_token.strip_prefix(RUN_TOKEN) else {
            let page = Page::parse(page_size, page_token)?;
            return Ok(RunsPage {
                size: page.size,
                after: None,
                offset: page.offset,
            });
        };
        let size = Page::parse(page_size, "")?.size;
        let mut parts = key.splitn(3, '.');
        let after = match (parts.next(), parts.next(), parts.next()) {
            (Some(secs), Some(nanos), Some(id)) if !id.is_empty() => secs
                .parse()
                .ok()
                .zip(nanos.parse().ok())
                .and_then(|(secs, nanos)| DateTime::from_timestamp(secs, nanos))
                .map(|created_at| RunKey {
                    created_at,
                    id: id.to_string(),
                }),
            _ => None,
        };
        match after {
            Some(after) => Ok(RunsPage {
                size,
                after: Some(after),
                offset: 0,
            }),
            None => Err(unknown_token(page_token)),
        }
    }

    /// What to ask the store for: one more run than a page, which tells whether
    /// another page follows.
    pub fn store_page(&self) -> RunPage {
        RunPage {
            limit: self.size + 1,
            offset: self.offset,
            after: self.after.clone(),
        }
    }

    /// Cuts `runs` (read by [`RunsPage::store_page`]) to the page and gives the token
    /// of the next page: empty when this page is the last.
    pub fn finish(&self, runs: &mut Vec<Run>) -> String {
        if runs.len() <= self.size {
            return String::new();
        }
        runs.truncate(self.size);
        match runs.last() {
            Some(last) => {
                let t = last.created_at;
                format!(
                    "{RUN_TOKEN}{}.{:09}.{}",
                    t.timestamp(),
                    t.timestamp_subsec_nanos(),
                    last.id
                )
            }
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn pages_parse_and_clamp() {
        // (page_size, page_token, expected offset and size, or None for an error)
        let cases = [
            (0, "", Some((0, DEFAULT_PAGE_SIZE))),
            (10, "", Some((0, 10))),
            (10, "20", Some((20, 10))),
            (100_000, "", Some((0, MAX_PAGE_SIZE))),
            (10, "abc", None),
            (10, "-1", None),
            (10, "1.5", None),
        ];
        for (size, token, want) in cases {
            let got = Page::parse(size, token);
            match want {
                Some((offset, size)) => assert_eq!(got.ok(), Some(Page { offset, size })),
                None => assert_eq!(
                    got.err().map(|s| s.code()),
                    Some(Code::InvalidArgument),
                    "{token}"
                ),
            }
        }
    }

    #[test]
    fn next_token_only_when_more_remain() {
        let page = Page {
            offset: 10,
            size: 10,
        };
        let cases = [(5, ""), (20, ""), (21, "20"), (1000, "20")];
        for (total, want) in cases {
            assert_eq!(page.next_token(total), want, "total {total}");
        }
    }

    #[test]
    fn run_tokens_name_the_last_run_of_the_page() {
        let run = |id: &str, secs: i64, nanos: u32| Run {
            status: crate::core::RunStatus::Succeeded,
            ..Run::queued(
                id,
                "job",
                crate::core::TriggerReason::Manual,
                DateTime::from_timestamp(secs, nanos).unwrap(),
            )
        };
        let page = RunsPage::parse(2, "").unwrap();
        assert_eq!(page.store_page().limit, 3);
        let mut runs = vec![run("c", 30, 0), run("b", 20, 5), run("a", 10, 0)];
        let token = page.finish(&mut runs);
        assert_eq!(runs.len(), 2);
        assert_eq!(token, "r1.20.000000005.b");
        let next = RunsPage::parse(2, &token).unwrap();
        assert_eq!(next.store_page().after, Some(RunKey::of(&runs[1])));
        assert_eq!(next.store_page().offset, 0);
        // The last page has no token.
        let mut last = vec![run("a", 10, 0)];
        assert_eq!(next.finish(&mut last), "");
        // An offset from an older server still reads as one.
        let old = RunsPage::parse(2, "40").unwrap();
        assert_eq!(
            (old.store_page().offset, old.store_page().after),
            (40, None)
        );
        for bad in [
            "r1.",
            "r1.20",
            "r1.20.5",
            "r1.20.5.",
            "r1.x.5.b",
            "r1.20.-1.b",
            "r2.1.2.c",
        ] {
            let got = RunsPage::parse(2, bad).map_err(|s| s.code());
            assert_eq!(got, Err(Code::InvalidArgument), "{bad}");
        }
    }
}
