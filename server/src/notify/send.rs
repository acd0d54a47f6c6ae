//! Sending one message: an HTTP POST (signed when the target has a secret) or a local
//! command with the message on its stdin. Each returns what happened in one line.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

/// The header holding `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Petit-Signature";

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// 1 s, 2 s, 4 s... at most a minute.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// The client of every webhook, built at the first one, off the executor: it loads the
/// system's root certificates (a file read and ~150 certificates parsed, some 50 KiB
/// kept), which a daemon without webhooks never needs.
async fn shared_client() -> &'static reqwest::Client {
    static CLIENT: tokio::sync::OnceCell<reqwest::Client> = tokio::sync::OnceCell::const_new();
    CLIENT
        .get_or_init(|| async {
            let built = tokio::task::spawn_blocking(http_client).await;
            built.unwrap_or_else(|_| http_client())
        })
        .await
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("petitd/", env!("CARGO_PKG_VERSION")))
        // A redirect could hand the signed body to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", crate::auth::hex(&mac.finalize().into_bytes()))
}

pub async fn webhook(
    url: &str,
    headers: &BTreeMap<String, String>,
    secret: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<String, String> {
    let mut request = shared_client()
        .await
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(secret) = secret {
        request = request.header(SIGNATURE_HEADER, signature(secret, body));
    }
    match request.body(body.to_vec()).send().await {
        Ok(response) if response.status().is_success() => {
            Ok(format!("HTTP {}", response.status().as_u16()))
        }
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {}s", timeout.as_secs_f64())),
        Err(e) if e.is_connect() => Err("cannot connect".to_string()),
        // Without the URL: it may carry a credential.
        Err(e) => Err(e.without_url().to_string()),
    }
}

/// Runs `argv` with `body` on its stdin; success is exit status 0 within `timeout`.
pub async fn command(argv: &[String], body: &[u8], timeout: Duration) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".to_string());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pgid = child.id();
    let mut stdin = child.stdin.take();
    let body = body.to_vec();
    let run = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A program that does not read its stdin is fine.
            let _ = stdin.write_all(&body).await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) if out.status.success() => Ok("exit 0".to_string()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or_default().trim();
            let code = out
                .status
                .code()
                .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
            Err(if last.is_empty() {
                code
            } else {
                format!("{code}: {}", last.chars().take(200).collect::<String>())
            })
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => {
            // The child was dropped with the future (kill_on_drop); its group too.
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(format!(
                "still running after {}s: killed",
                timeout.as_secs_f64()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        let got: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[tokio::test]
    async fn commands_get_the_body_and_a_time_limit() {
        let ok = command(
            &["sh".into(), "-c".into(), "grep -q '\"job\"'".into()],
            br#"{"job":"x"}"#,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(ok, Ok("exit 0".to_string()));
        let failed = command(
            &["sh".into(), "-c".into(), "echo nope >&2; exit 4".into()],
            b"{}",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(failed, Err("exit 4: nope".to_string()));
        let hung = command(
            &["sleep".into(), "30".into()],
            b"{}",
            Duration::from_millis(200),
        )
        .await;
        assert!(hung.unwrap_err().contains("killed"));
        let missing = command(&["/no/such/program".into()], b"{}", Duration::from_secs(1)).await;
        assert!(missing.unwrap_err().contains("cannot start"));
    }
}
