//! Paging of list RPCs: `page_size` (default 50, at most 500) and an opaque
//! `page_token` that is, under the hood, the offset of the page.

use tonic::Status;

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
            page_token.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "page_token '{page_token}' is not one this server gave out; \
                     pass the next_page_token of the previous response, or none for the first page"
                ))
            })?
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
}
