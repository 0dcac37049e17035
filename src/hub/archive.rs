//! The archive port: history older than what rooms keep in memory.

use super::msg::Message;

/// Where room history older than the in-memory lines is kept (the durable
/// log). The hub does no I/O itself: the server hands it an archive for the
/// requests that may need one.
pub trait Archive {
    /// The newest `limit` chat lines of `room` with `after < seq < before`,
    /// oldest first; `Ok(None)` when there is no archive (history lives in
    /// memory only); `Err(())` when it cannot be read now.
    #[allow(clippy::result_unit_err)]
    fn read(
        &mut self,
        room: &str,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, ()>;

    /// True once writes failed: the archive may have holes, so resumes are
    /// answered with `gap`.
    fn degraded(&self) -> bool;
}

/// No archive: history lives in memory only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoArchive;

impl Archive for NoArchive {
    fn read(&mut self, _: &str, _: u64, _: u64, _: usize) -> Result<Option<Vec<Message>>, ()> {
        Ok(None)
    }

    fn degraded(&self) -> bool {
        false
    }
}

/// Most lines a resume (`since`) replays before it says `gap` instead.
pub const MAX_RESUME_LINES: usize = 1000;
