//! The interactive parts: a hijacked stream joined to this terminal.

use std::os::fd::AsRawFd;

use api::client::Io;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Puts stdin's terminal in raw mode until dropped.
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    pub fn enter() -> Self {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        Self { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, t);
        }
    }
}

pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false)
}

pub fn stdout_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdout().as_raw_fd()).unwrap_or(false)
}

/// The terminal's size as (height, width).
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize we own.
    let r = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Copies stdin to the connection and the connection to stdout/stderr (demultiplexing
/// Docker's frames when `multiplexed`) until the output ends.
pub async fn pump(conn: Box<dyn Io>, multiplexed: bool, send_stdin: bool) {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let input = if send_stdin {
        Some(tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = wr.flush().await;
                    }
                }
            }
            // Half-close: the container sees the end of its stdin.
            let _ = wr.shutdown().await;
        }))
    } else {
        None
    };
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if multiplexed {
            pending.extend_from_slice(&buf[..n]);
            for (stream, data) in api::frame::decode(&mut pending) {
                if stream == api::frame::STDERR {
                    let _ = err.write_all(&data).await;
                    let _ = err.flush().await;
                } else {
                    let _ = out.write_all(&data).await;
                }
            }
        } else {
            let _ = out.write_all(&buf[..n]).await;
        }
        let _ = out.flush().await;
    }
    if let Some(i) = input {
        i.abort();
    }
}
