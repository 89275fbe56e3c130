//! An interactive exec or console session over a WebSocket (the frame protocol of `api::ws`).
//!
//! Local stdin goes out as `STDIN` frames (and `CLOSE_STDIN` at end of input); `STDOUT`/`STDERR`
//! frames are written locally; the `EXIT` frame ends the session with the command's exit code. With a
//! TTY, the terminal is in raw mode for the session and window size changes are sent as `RESIZE`.

use std::io::Write as _;

use forkr_engine::api::{ErrorBody, Resize, ws};
use forkr_engine::{Error, ErrorKind};
use futures_util::{SinkExt as _, StreamExt as _};
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Ws;
use crate::error::{CliError, Result};
use crate::term;

/// Exit code reported when the user interrupts the session (128 + SIGINT), like a shell.
pub const INTERRUPTED: i32 = 130;

fn frame(channel: u8, payload: &[u8]) -> Message {
    let mut v = Vec::with_capacity(payload.len() + 1);
    v.push(channel);
    v.extend_from_slice(payload);
    Message::Binary(v.into())
}

/// What the server sent, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    Exit(i32),
    /// A frame on a channel this client does not know; ignored for forward compatibility.
    Other,
}

/// Decodes one binary frame from the server.
pub fn decode(data: &[u8]) -> Result<Incoming<'_>> {
    let Some((&channel, payload)) = data.split_first() else { return Ok(Incoming::Other) };
    Ok(match channel {
        ws::STDOUT => Incoming::Stdout(payload),
        ws::STDERR => Incoming::Stderr(payload),
        ws::EXIT => {
            let text = String::from_utf8_lossy(payload);
            let code = text.trim().parse::<i32>().map_err(|_| {
                CliError::from(Error::internal(format!("forkr-server sent an invalid exit code {text:?}")))
            })?;
            Incoming::Exit(code)
        }
        _ => Incoming::Other,
    })
}

/// The error for a text frame: the server's `ErrorBody`, sent when the process could not start.
pub fn text_error(text: &str) -> CliError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) => {
            let kind = match b.error.code.as_str() {
                "not_found" => ErrorKind::NotFound,
                "fork_running" | "not_running" | "conflict" => ErrorKind::Conflict,
                _ => ErrorKind::BadRequest,
            };
            Error::new(kind, b.error.code, b.error.message).into()
        }
        Err(_) => Error::internal(format!("forkr-server: {}", text.trim())).into(),
    }
}

/// Reads local stdin into `STDIN` frames until end of input, then sends `CLOSE_STDIN`.
async fn pump_stdin(tx: mpsc::Sender<Message>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(frame(ws::CLOSE_STDIN, &[])).await;
                return;
            }
            Ok(n) => {
                if tx.send(frame(ws::STDIN, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends the terminal size whenever the window changes (SIGWINCH).
async fn pump_resize(tx: mpsc::Sender<Message>) {
    let Ok(mut winch) = signal(SignalKind::window_change()) else { return };
    while winch.recv().await.is_some() {
        if let Some((rows, cols)) = term::size() {
            let payload = serde_json::to_vec(&Resize { rows, cols }).unwrap_or_default();
            if tx.send(frame(ws::RESIZE, &payload)).await.is_err() {
                return;
            }
        }
    }
}

/// Resolves when the user or the system asks this process to stop (SIGINT, SIGTERM, SIGHUP), with the
/// shell-style exit code. Listening here replaces the default "die at once", so the session can close
/// the WebSocket (the server then ends the remote process) and callers can clean up.
pub async fn interrupted() -> i32 {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => INTERRUPTED,
        _ = term.recv() => 128 + Signal::SIGTERM as i32,
        _ = hup.recv() => 128 + Signal::SIGHUP as i32,
    }
}

/// Runs a session on an open WebSocket. `first` is sent before anything else (the `ExecRequest` of
/// exec). With `tty`, the local terminal is put in raw mode until the session ends. Returns the
/// remote exit code.
pub async fn run(ws: Ws, first: Option<String>, tty: bool) -> Result<i32> {
    let (mut sink, mut stream) = ws.split();
    let lost = |e: &dyn std::fmt::Display| -> CliError {
        Error::internal(format!("lost the connection to forkr-server: {e}")).into()
    };
    if let Some(text) = first {
        sink.send(Message::Text(text.into())).await.map_err(|e| lost(&e))?;
    }
    let raw = if tty { Some(term::RawMode::stdin()?) } else { None };

    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let stdin_task = tokio::spawn(pump_stdin(tx.clone()));
    let resize_task = tty.then(|| tokio::spawn(pump_resize(tx.clone())));
    drop(tx);
    let interrupt = interrupted();
    tokio::pin!(interrupt);

    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let result = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                None => break Err(lost(&"the server closed the connection before the command exited")),
                Some(Err(e)) => break Err(lost(&e)),
                Some(Ok(Message::Binary(data))) => match decode(&data) {
                    Ok(Incoming::Stdout(b)) => {
                        let _ = stdout.write_all(b).and_then(|_| stdout.flush());
                    }
                    Ok(Incoming::Stderr(b)) => {
                        let _ = stderr.write_all(b).and_then(|_| stderr.flush());
                    }
                    Ok(Incoming::Exit(code)) => break Ok(code),
                    Ok(Incoming::Other) => {}
                    Err(e) => break Err(e),
                },
                Some(Ok(Message::Text(text))) => break Err(text_error(&text)),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                    let why = why.unwrap_or_else(|| "the server closed the connection before the command exited".into());
                    break Err(lost(&why));
                }
                Some(Ok(_)) => {}
            },
            Some(out) = rx.recv() => {
                if let Err(e) = sink.send(out).await {
                    break Err(lost(&e));
                }
            }
            code = &mut interrupt => break Ok(code),
        }
    };
    stdin_task.abort();
    if let Some(t) = resize_task {
        t.abort();
    }
    drop(raw);
    // A polite close; the server may already be gone.
    let _ = sink.send(Message::Close(None)).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_channel_byte_first() {
        let Message::Binary(b) = frame(ws::STDIN, b"hi") else { panic!("binary") };
        assert_eq!(&b[..], &[ws::STDIN, b'h', b'i']);
        let Message::Binary(b) = frame(ws::CLOSE_STDIN, &[]) else { panic!("binary") };
        assert_eq!(&b[..], &[ws::CLOSE_STDIN]);
    }

    #[test]
    fn decode_server_frames() {
        assert_eq!(decode(&[ws::STDOUT, b'a']).unwrap(), Incoming::Stdout(b"a"));
        assert_eq!(decode(&[ws::STDERR]).unwrap(), Incoming::Stderr(b""));
        assert_eq!(decode(b"\x0342").unwrap(), Incoming::Exit(42));
        assert_eq!(decode(b"\x03-1\n").unwrap(), Incoming::Exit(-1));
        assert!(decode(b"\x03x").is_err());
        assert_eq!(decode(&[]).unwrap(), Incoming::Other);
        assert_eq!(decode(&[99, 1]).unwrap(), Incoming::Other);
    }

    #[test]
    fn text_frames_are_server_errors() {
        let e = text_error(r#"{"error":{"code":"not_found","message":"box \"x\" not found"}}"#);
        assert_eq!(
            (e.kind(), e.code(), e.message()),
            (ErrorKind::NotFound, "not_found", "box \"x\" not found")
        );
        let e = text_error("boom");
        assert_eq!(e.message(), "forkr-server: boom");
    }
}
