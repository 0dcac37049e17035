//! Where each room's records sit on disk: a sparse, in-memory index that
//! turns "records of room R older than seq S, at most N" into a few byte
//! ranges of a few segments.
//!
//! Owns the per-room bookkeeping: the last seq stored (to refuse a seq that
//! does not increase), and for each segment holding the room's records, the
//! first record and every [`MARK_EVERY`]th one after it as `(seq, offset)`,
//! plus where the room's last record in that segment ends. Knows nothing
//! about files or the record format; sans-I/O.
//!
//! How a page is found: seqs increase within a room and records are
//! appended in order, so within one segment the marks are sorted by seq and
//! by offset. The records with `seq < before` end at the first mark with
//! `seq >= before` (or at the room's end in the segment); going back
//! `ceil(need / MARK_EVERY) + 1` marks from there covers at least `need` of
//! them. The caller reads that range, keeps the room's records with
//! `seq < before`, and moves to the previous segment if it still needs more.
//!
//! Cost: 16 bytes per [`MARK_EVERY`] records of a room, plus about 80 bytes
//! per (room, segment) pair. A page reads at most `(need / MARK_EVERY + 2) *
//! MARK_EVERY` of the room's records, plus whatever other rooms wrote in
//! between, from each segment it touches.

use std::collections::HashMap;

/// One `(seq, offset)` mark is kept per this many records of a room in a segment.
pub const MARK_EVERY: u64 = 64;

/// A byte range `[start, end)` of one segment that holds the wanted records
/// (and possibly others, which the caller filters out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Segment id.
    pub segment: u64,
    /// First byte (a line start).
    pub start: u64,
    /// One past the last byte (a line end).
    pub end: u64,
}

/// One room's records in one segment.
#[derive(Debug, Clone)]
struct RoomSegment {
    segment: u64,
    count: u64,
    /// End of the room's last record in this segment.
    end: u64,
    /// `(seq, offset)` of record 0, MARK_EVERY, 2 * MARK_EVERY, ...
    marks: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Default)]
struct Room {
    last_seq: Option<u64>,
    /// Oldest segment first.
    segments: Vec<RoomSegment>,
}

/// The per-room index. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Index {
    rooms: HashMap<String, Room>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// The last seq recorded for `room` (kept even after its segments expire);
    /// `None` if the room was never seen.
    pub fn last_seq(&self, room: &str) -> Option<u64> {
        self.rooms.get(room).and_then(|r| r.last_seq)
    }

    /// Notes that `room` has now used `seq` (only ever raises the last seq).
    pub fn note_seq(&mut self, room: &str, seq: u64) {
        if let Some(entry) = self.room_mut(room) {
            entry.last_seq = Some(entry.last_seq.map_or(seq, |last| last.max(seq)));
        }
    }

    /// Records that `room`'s record `seq` occupies `[offset, end)` of
    /// `segment`. Calls must come in file order (segment, then offset).
    pub fn add(&mut self, room: &str, seq: u64, segment: u64, offset: u64, end: u64) {
        self.note_seq(room, seq);
        let Some(entry) = self.room_mut(room) else {
            return;
        };
        let same_segment = entry.segments.last().is_some_and(|s| s.segment == segment);
        if !same_segment {
            entry.segments.push(RoomSegment {
                segment,
                count: 0,
                end,
                marks: Vec::new(),
            });
        }
        if let Some(rs) = entry.segments.last_mut() {
            if rs.count % MARK_EVERY == 0 {
                rs.marks.push((seq, offset));
            }
            rs.count += 1;
            rs.end = end;
        }
    }

    /// Forgets every position in `segment` (deleted by retention or repair).
    /// Last seqs are kept.
    pub fn drop_segment(&mut self, segment: u64) {
        for room in self.rooms.values_mut() {
            room.segments.retain(|s| s.segment != segment);
        }
    }

    /// Every room's last seq, in no particular order.
    pub fn last_seqs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.rooms
            .iter()
            .filter_map(|(name, room)| Some((name.as_str(), room.last_seq?)))
    }

    /// Number of rooms known.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// The ranges to read for up to `need` records of `room` with
    /// `seq < before`, newest segment first; the caller stops reading once it
    /// has `need` records. Empty when the room has none on disk.
    pub fn spans(&self, room: &str, before: u64, need: usize) -> Vec<Span> {
        let Some(entry) = self.rooms.get(room) else {
            return Vec::new();
        };
        let back = need.div_ceil(MARK_EVERY as usize);
        entry
            .segments
            .iter()
            .rev()
            .filter_map(|rs| {
                let j = rs.marks.partition_point(|&(seq, _)| seq < before);
                if j == 0 {
                    return None;
                }
                let end = rs.marks.get(j).map_or(rs.end, |&(_, offset)| offset);
                let i = (j - 1).saturating_sub(back);
                let start = rs.marks.get(i)?.1;
                Some(Span {
                    segment: rs.segment,
                    start,
                    end,
                })
            })
            .collect()
    }

    /// The room's entry, created if new (always `Some`; looked up first so
    /// a known room costs no key allocation).
    fn room_mut(&mut self, room: &str) -> Option<&mut Room> {
        if !self.rooms.contains_key(room) {
            self.rooms.insert(room.to_owned(), Room::default());
        }
        self.rooms.get_mut(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` records of room "a", 10 bytes each, interleaved with one of
    /// room "b" after each, in segment `seg` starting at seq `first`.
    fn fill(index: &mut Index, seg: u64, first: u64, count: u64) {
        for k in 0..count {
            let off = k * 20;
            index.add("a", first + k, seg, off, off + 10);
            index.add("b", first + k, seg, off + 10, off + 20);
        }
    }

    #[test]
    fn tracks_last_seq_through_expiry() {
        let mut index = Index::new();
        assert_eq!(index.last_seq("a"), None);
        fill(&mut index, 1, 1, 3);
        assert_eq!(index.last_seq("a"), Some(3));
        index.note_seq("a", 2);
        assert_eq!(index.last_seq("a"), Some(3));
        index.drop_segment(1);
        assert_eq!(index.last_seq("a"), Some(3));
        assert!(index.spans("a", 10, 5).is_empty());
    }

    #[test]
    fn small_page_reads_only_the_last_marks() {
        let mut index = Index::new();
        fill(&mut index, 1, 1, 1000);
        // Marks at seqs 1, 65, 129, ...; before = 500: first mark >= 500 is
        // seq 513 (record 512, offset 512 * 20); need 10 -> one mark back.
        let spans = index.spans("a", 500, 10);
        assert_eq!(
            spans,
            vec![Span {
                segment: 1,
                start: 384 * 20,
                end: 512 * 20
            }]
        );
        // Past the last mark: up to the room's end in the segment.
        let spans = index.spans("a", 5000, 1);
        assert_eq!(spans[0].end, 999 * 20 + 10);
        assert_eq!(spans[0].start, 896 * 20);
        // Nothing older than the first record.
        assert!(index.spans("a", 1, 10).is_empty());
    }

    #[test]
    fn spans_cover_enough_records_newest_segment_first() {
        let mut index = Index::new();
        fill(&mut index, 1, 1, 300);
        fill(&mut index, 2, 301, 300);
        for need in [1usize, 63, 64, 65, 200, 1000] {
            for before in [2u64, 100, 301, 302, 450, 601, 10_000] {
                let spans = index.spans("a", before, need);
                assert!(spans.windows(2).all(|w| w[0].segment > w[1].segment));
                // Count room-a records with seq < before inside the spans.
                let mut covered = 0u64;
                for s in &spans {
                    let first = if s.segment == 1 { 1 } else { 301 };
                    for k in 0..300 {
                        let off = k * 20;
                        if off >= s.start && off + 10 <= s.end && first + k < before {
                            covered += 1;
                        }
                    }
                }
                let available = before.saturating_sub(1).min(600);
                assert!(
                    covered >= (need as u64).min(available),
                    "need {need} before {before}: covered {covered}"
                );
            }
        }
    }

    #[test]
    fn unknown_room_has_no_spans() {
        assert!(Index::new().spans("x", 10, 10).is_empty());
    }
}
