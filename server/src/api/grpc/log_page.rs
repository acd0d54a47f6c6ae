//! Paging of `GetTaskLogs`: `page_size` lines (default 1,000, at most 10,000, and about
//! 1 MiB of text at most), `tail`, and the page token, which is a log position
//! ([`LogPosition`]) written as 32 hex digits: opaque to clients, cheap to check.

use tonic::Status;

use crate::store::{LogPageLimit, LogPosition, LogStart};

/// Lines in a page when the request leaves `page_size` at 0.
pub const DEFAULT_LOG_PAGE_LINES: usize = 1_000;
/// Most lines in a page; bigger requests are clamped to it.
pub const MAX_LOG_PAGE_LINES: usize = 10_000;
/// Most bytes of line text in a page. Lines are at most 64 KiB, so a page stays well
/// under the 4 MiB a gRPC client takes by default, even with each line's run id, task
/// id and time around it (or as JSON over REST).
pub const MAX_LOG_PAGE_BYTES: usize = 1 << 20;

/// The pages in which `FollowTaskLogs` sends what is stored before the live lines.
pub const FOLLOW_PAGE: LogPageLimit = LogPageLimit {
    lines: DEFAULT_LOG_PAGE_LINES,
    bytes: MAX_LOG_PAGE_BYTES,
};

/// Where a page starts and how much it holds, from a request's fields.
pub fn parse(
    page_size: u32,
    page_token: &str,
    tail: u32,
) -> Result<(LogStart, LogPageLimit), Status> {
    let lines = match usize::try_from(page_size).unwrap_or(MAX_LOG_PAGE_LINES) {
        0 => DEFAULT_LOG_PAGE_LINES,
        n => n.min(MAX_LOG_PAGE_LINES),
    };
    let limit = LogPageLimit {
        lines,
        bytes: MAX_LOG_PAGE_BYTES,
    };
    let start = if !page_token.is_empty() {
        LogStart::At(decode_token(page_token)?)
    } else if tail > 0 {
        LogStart::Tail(usize::try_from(tail).unwrap_or(usize::MAX))
    } else {
        LogStart::First
    };
    Ok((start, limit))
}

/// The token of the page that starts at `next` (empty: no next page).
pub fn token(next: Option<LogPosition>) -> String {
    next.map(|p| format!("{:016x}{:016x}", p.batch, p.pos))
        .unwrap_or_default()
}

fn decode_token(token: &str) -> Result<LogPosition, Status> {
    let invalid = || {
        Status::invalid_argument(
            "page_token is not one this server gave out; pass the next_page_token of the \
             previous response, or none for the first page",
        )
    };
    // Checked before slicing: a multi-byte character must not split a slice.
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let batch = u64::from_str_radix(&token[..16], 16).map_err(|_| invalid())?;
    let pos = u64::from_str_radix(&token[16..], 16).map_err(|_| invalid())?;
    Ok(LogPosition { batch, pos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn tokens_round_trip() {
        for position in [
            LogPosition { batch: 0, pos: 0 },
            LogPosition { batch: 1, pos: 511 },
            LogPosition {
                batch: u64::MAX,
                pos: u64::MAX,
            },
        ] {
            let (start, _) = parse(0, &token(Some(position)), 0).expect("a token we made");
            assert_eq!(start, LogStart::At(position));
        }
        assert_eq!(token(None), "");
    }

    #[test]
    fn requests_parse_and_clamp() {
        let t = token(Some(LogPosition { batch: 7, pos: 3 }));
        // (page_size, page_token, tail, expected start and lines)
        let cases = [
            (0, "", 0, LogStart::First, DEFAULT_LOG_PAGE_LINES),
            (10, "", 0, LogStart::First, 10),
            (u32::MAX, "", 0, LogStart::First, MAX_LOG_PAGE_LINES),
            (0, "", 5, LogStart::Tail(5), DEFAULT_LOG_PAGE_LINES),
            // A token says where the page starts; tail is for the first page only.
            (
                10,
                t.as_str(),
                5,
                LogStart::At(LogPosition { batch: 7, pos: 3 }),
                10,
            ),
        ];
        for (size, token, tail, start, lines) in cases {
            let (got_start, limit) = parse(size, token, tail).expect("valid");
            assert_eq!(
                (got_start, limit.lines),
                (start, lines),
                "{size} {token} {tail}"
            );
            assert_eq!(limit.bytes, MAX_LOG_PAGE_BYTES);
        }
    }

    #[test]
    fn garbage_tokens_are_invalid_argument() {
        let long = "0".repeat(100_000);
        let cases = [
            "abc",
            "42",
            "0000000000000000000000000000000g",
            "000000000000000000000000000000000",
            "+000000000000000000000000000000f",
            "ééééééééééééééé00",
            long.as_str(),
        ];
        for token in cases {
            let got = parse(0, token, 0).map(|_| ()).map_err(|s| s.code());
            assert_eq!(got, Err(Code::InvalidArgument), "{token:.40}");
        }
    }
}
