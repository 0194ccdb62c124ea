//! Real service binaries in tests: SIGTERM and wait for the exit (R12-style drain tests).

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Sends SIGTERM to `child` and polls until it exits; `Err` (kind `TimedOut`) if it is still
/// running after `limit`. Returns the exit status and how long the drain took.
pub async fn sigterm_and_wait(
    child: &mut Child,
    limit: Duration,
) -> std::io::Result<(ExitStatus, Duration)> {
    let t0 = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if !kill.success() {
        return Err(std::io::Error::other(format!("kill -TERM failed: {kill}")));
    }
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, t0.elapsed()));
        }
        if t0.elapsed() > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("still running {limit:?} after SIGTERM"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
