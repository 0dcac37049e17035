//! The Lua scripts the nodes run in Redis, and the commands that run them.
//!
//! Each script does one cluster step atomically (Redis runs a script without
//! interleaving other commands):
//!
//! - [`POST`]: number a room line, keep it in the room's stream, publish it;
//! - [`RELEASE`]: give up a name claim, only if it is still ours;
//! - [`REFRESH`]: keep a name claim alive, or take it again if Redis lost it;
//! - [`PRIVATE`]: deliver a private message if its target is online somewhere;
//! - [`TOPIC`]: set a room's topic and publish it.
//!
//! A node runs a script by its SHA-1 ([`Script::evalsha`]); Redis answers
//! `NOSCRIPT` when it does not have it (a restart, `SCRIPT FLUSH`), and the
//! node then sends the source ([`Script::eval`], which also caches it) or
//! loads it first ([`Script::encode_load`]). [`is_noscript`] recognises that
//! answer. Sans-I/O: commands come out as argument lists or RESP bytes.
//!
//! Numbers cross into Lua as doubles: a seq is exact up to 2^53, which no
//! room reaches. Seqs are written with `%d` (Lua's default `%.14g` would
//! switch to exponent notation from 10^14 on).

use std::sync::OnceLock;

use sha1::{Digest, Sha1};

use crate::proto::resp::{Frame, encode_command};

/// One Lua script and its SHA-1 (computed once, on first use).
#[derive(Debug)]
pub struct Script {
    /// The Lua source, exactly as sent to Redis (its SHA-1 is over these bytes).
    pub source: &'static str,
    /// How many of its arguments are keys (`KEYS`); the rest are `ARGV`.
    pub num_keys: usize,
    sha: OnceLock<String>,
}

/// POST: a room line.
///
/// `KEYS[1]` room seq counter, `KEYS[2]` room log (a stream); `ARGV[1]` room
/// channel, `ARGV[2]` payload (any bytes), `ARGV[3]` approximate maximum
/// length of the stream. Takes the next seq, adds the payload to the stream
/// under ID `seq-0` (field `m`, trimmed with `MAXLEN ~`), publishes
/// `m SEQ PAYLOAD` on the room channel; returns the seq.
///
/// If the stream is ahead of the counter (the counter was lost, the stream
/// was not), the `XADD` fails; the script then reads the stream's last
/// generated ID (`XINFO STREAM`, O(1)), moves the counter past it and adds
/// there, so seqs never go back. The usual path is three commands.
pub static POST: Script = Script::new(
    2,
    r#"local seq = redis.call('INCR', KEYS[1])
local id = string.format('%d-0', seq)
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id, 'm', ARGV[2])
if type(added) == 'table' and added.err then
  local info = redis.pcall('XINFO', 'STREAM', KEYS[2])
  if info.err then return redis.error_reply(added.err) end
  local last = nil
  for i = 1, #info - 1, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
  local top = last and tonumber(string.match(last, '^(%d+)%-'))
  if not top or top < seq then return redis.error_reply(added.err) end
  seq = top + 1
  id = string.format('%d-0', seq)
  redis.call('SET', KEYS[1], string.format('%d', seq))
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id, 'm', ARGV[2])
end
redis.call('PUBLISH', ARGV[1], 'm ' .. string.format('%d', seq) .. ' ' .. ARGV[2])
return seq
"#,
);

/// RELEASE: compare and delete.
///
/// `KEYS[1]` a name claim; `ARGV[1]` the value we wrote. Deletes the key if
/// it still holds that value; returns 1 if deleted, else 0.
pub static RELEASE: Script = Script::new(
    1,
    r#"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
);

/// REFRESH: keep a claim alive.
///
/// `KEYS[1]` a name claim; `ARGV[1]` our value, `ARGV[2]` its lifetime in
/// seconds. Ours: extended, 1. Missing (Redis lost it or it expired): set
/// again with that lifetime, 1. Someone else's: untouched, 0.
pub static REFRESH: Script = Script::new(
    1,
    r#"local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
end
return 0
"#,
);

/// PRIVATE: deliver to an online user.
///
/// `KEYS[1]` the target's name claim; `ARGV[1]` the target's user channel,
/// `ARGV[2]` the payload. Nil when nobody holds the name or nobody listens on
/// its channel (nothing published in the first case); else the claim's value
/// (which carries the display name).
pub static PRIVATE: Script = Script::new(
    1,
    r#"local v = redis.call('GET', KEYS[1])
if not v then return false end
if redis.call('PUBLISH', ARGV[1], ARGV[2]) == 0 then return false end
return v
"#,
);

/// TOPIC: set and announce.
///
/// `KEYS[1]` the room's topic key; `ARGV[1]` the room channel, `ARGV[2]` the
/// payload. Stores the payload, publishes `t PAYLOAD`; returns the number of
/// receivers.
pub static TOPIC: Script = Script::new(
    1,
    r#"redis.call('SET', KEYS[1], ARGV[2])
return redis.call('PUBLISH', ARGV[1], 't ' .. ARGV[2])
"#,
);

/// Every script, for loading them all at once.
pub static ALL: [&Script; 5] = [&POST, &RELEASE, &REFRESH, &PRIVATE, &TOPIC];

impl Script {
    /// A script whose first `num_keys` arguments are keys.
    pub const fn new(num_keys: usize, source: &'static str) -> Script {
        Script {
            source,
            num_keys,
            sha: OnceLock::new(),
        }
    }

    /// The SHA-1 of the source, 40 lowercase hex digits (what `SCRIPT LOAD`
    /// answers and `EVALSHA` takes).
    pub fn sha1_hex(&self) -> String {
        self.sha().to_owned()
    }

    /// [`Script::sha1_hex`], borrowed from the cache.
    pub fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            let digest = Sha1::digest(self.source.as_bytes());
            let mut hex = String::with_capacity(40);
            for byte in digest.iter() {
                hex.push(hex_digit(byte >> 4));
                hex.push(hex_digit(byte & 0xf));
            }
            hex
        })
    }

    /// `EVALSHA sha numkeys keys… args…`, to pass to `Pipeline::send` (as
    /// `&call.parts()`) or encode.
    pub fn evalsha<'a>(&'a self, keys: &[&'a [u8]], args: &[&'a [u8]]) -> Call<'a> {
        Call::new(b"EVALSHA", self.sha().as_bytes(), keys, args)
    }

    /// `EVAL source numkeys keys… args…`: the fallback after `NOSCRIPT`.
    pub fn eval<'a>(&'a self, keys: &[&'a [u8]], args: &[&'a [u8]]) -> Call<'a> {
        Call::new(b"EVAL", self.source.as_bytes(), keys, args)
    }

    /// Appends `EVALSHA` of this script as RESP to `out`.
    pub fn encode_evalsha(&self, keys: &[&[u8]], args: &[&[u8]], out: &mut Vec<u8>) {
        self.evalsha(keys, args).encode(out);
    }

    /// Appends `EVAL` of this script as RESP to `out`.
    pub fn encode_eval(&self, keys: &[&[u8]], args: &[&[u8]], out: &mut Vec<u8>) {
        self.eval(keys, args).encode(out);
    }

    /// `SCRIPT LOAD source`; Redis answers with the SHA-1.
    pub fn load(&self) -> [&[u8]; 3] {
        [b"SCRIPT", b"LOAD", self.source.as_bytes()]
    }

    /// Appends `SCRIPT LOAD source` as RESP to `out`.
    pub fn encode_load(&self, out: &mut Vec<u8>) {
        encode_command(&self.load(), out);
    }
}

/// One script call's arguments, borrowed except the key count.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    verb: &'static [u8],
    script: &'a [u8],
    num_keys: String,
    rest: Vec<&'a [u8]>,
}

impl<'a> Call<'a> {
    fn new(
        verb: &'static [u8],
        script: &'a [u8],
        keys: &[&'a [u8]],
        args: &[&'a [u8]],
    ) -> Call<'a> {
        let mut rest = Vec::with_capacity(keys.len() + args.len());
        rest.extend_from_slice(keys);
        rest.extend_from_slice(args);
        Call {
            verb,
            script,
            num_keys: keys.len().to_string(),
            rest,
        }
    }

    /// The command's arguments in order, as `encode_command` and
    /// `Pipeline::send` take them.
    pub fn parts(&self) -> Vec<&[u8]> {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.rest.len() + 3);
        parts.push(self.verb);
        parts.push(self.script);
        parts.push(self.num_keys.as_bytes());
        parts.extend_from_slice(&self.rest);
        parts
    }

    /// Appends the command as RESP to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_command(&self.parts(), out);
    }
}

/// True when `reply` is Redis saying it does not have the script
/// (`-NOSCRIPT …`): send it with `EVAL` (or `SCRIPT LOAD`) and try again.
pub fn is_noscript(reply: &Frame) -> bool {
    reply
        .error_message()
        .is_some_and(|m| m.starts_with(b"NOSCRIPT"))
}

fn hex_digit(n: u8) -> char {
    char::from(
        b"0123456789abcdef"
            .get(usize::from(n & 0xf))
            .copied()
            .unwrap_or(b'0'),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_of_the_source_in_lowercase_hex() {
        let s = Script::new(0, "return 1");
        // `printf 'return 1' | sha1sum`
        assert_eq!(s.sha1_hex(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        for script in ALL {
            let sha = script.sha();
            assert_eq!(sha.len(), 40);
            assert!(sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
        let shas: std::collections::BTreeSet<&str> = ALL.iter().map(|s| s.sha()).collect();
        assert_eq!(shas.len(), ALL.len(), "every script differs");
    }

    #[test]
    fn commands_carry_the_key_count_and_arguments_in_order() {
        let s = Script::new(1, "return KEYS[1]");
        let mut out = Vec::new();
        s.encode_evalsha(&[b"k"], &[b"a\r\n", b""], &mut out);
        let mut want = Vec::new();
        encode_command(
            &[b"EVALSHA", s.sha().as_bytes(), b"1", b"k", b"a\r\n", b""],
            &mut want,
        );
        assert_eq!(out, want);
        let mut out = Vec::new();
        s.encode_eval(&[], &[b"x"], &mut out);
        assert_eq!(
            out,
            b"*4\r\n$4\r\nEVAL\r\n$14\r\nreturn KEYS[1]\r\n$1\r\n0\r\n$1\r\nx\r\n"
        );
        let keys: Vec<&[u8]> = vec![b"k"; 12];
        assert_eq!(s.evalsha(&keys, &[]).parts()[2], b"12");
        let mut out = Vec::new();
        s.encode_load(&mut out);
        assert_eq!(
            out,
            b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$14\r\nreturn KEYS[1]\r\n"
        );
    }

    #[test]
    fn noscript_is_recognised_among_replies() {
        assert!(is_noscript(&Frame::Error(
            b"NOSCRIPT No matching script. Please use EVAL.".to_vec()
        )));
        assert!(is_noscript(&Frame::BulkError(b"NOSCRIPT x".to_vec())));
        assert!(!is_noscript(&Frame::Error(b"ERR NOSCRIPT".to_vec())));
        assert!(!is_noscript(&Frame::Bulk(b"NOSCRIPT".to_vec())));
    }
}
