//! Static files for the web client: lookup, MIME type, ETag, conditional GET.
//!
//! Owns: turning a GET/HEAD [`Request`] into a [`Response`] from either the
//! embedded asset table (the default: the binary alone serves the client) or a
//! directory read on each request (`--assets DIR`, for editing pages without
//! rebuilding). Must not know about sockets, connections, the hub, or the
//! routes the loop handles itself (`/healthz`, `/stats`, `/ws`).
//!
//! Rules:
//! - The request-target goes through [`normalize`]; its errors give 400/404.
//!   A segment starting with `.` (dotfiles, `.git/`) is 404.
//! - `dir/` means `dir/index.html`; a directory itself is never served (404).
//! - Directory mode canonicalises the root once and every file per request;
//!   a file whose canonical path leaves the root (a symlink pointing outside)
//!   is 404.
//! - Cache policy: every file gets `Cache-Control: no-cache`. File names are
//!   not content-hashed, so a cached `app.js` could outlive the `index.html`
//!   that expects it; with a strong ETag the revalidation costs one small 304.
//! - HTML also gets the [`CSP`] header.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::proto::http::path::normalize;
use crate::proto::http::request::Request;
use crate::proto::http::response::{Response, error};
use crate::web::assets;

/// Content-Security-Policy sent with every HTML page: scripts, styles,
/// images and WebSocket/fetch connections only from this origin.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `Cache-Control` for every file (see the module docs).
const CACHE_CONTROL: &str = "no-cache";

/// The static file server. Not `Send` (bodies are `Rc`), like the loop.
#[derive(Debug)]
pub struct StaticFiles {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Built once; bodies and ETags are shared by every response.
    Embedded(HashMap<&'static str, File>),
    /// Canonical root directory; files are read on each request.
    Dir(PathBuf),
}

#[derive(Debug)]
struct File {
    body: Rc<[u8]>,
    etag: String,
    content_type: &'static str,
}

impl File {
    fn new(path: &str, body: Rc<[u8]>) -> File {
        File {
            etag: etag(&body),
            content_type: content_type(path),
            body,
        }
    }
}

impl StaticFiles {
    /// The files embedded by `build.rs` from `assets/`.
    pub fn embedded() -> StaticFiles {
        StaticFiles::from_table(assets::FILES)
    }

    /// Serves an in-memory table of `(relative path, contents)`, paths in the
    /// form [`normalize`] produces (`"index.html"`, `"css/chat.css"`).
    /// ETags are computed here, once per file.
    pub fn from_table(files: &[(&'static str, &'static [u8])]) -> StaticFiles {
        let map = files
            .iter()
            .map(|&(path, bytes)| (path, File::new(path, Rc::from(bytes))))
            .collect();
        StaticFiles {
            source: Source::Embedded(map),
        }
    }

    /// Serves files from `dir`, read on each request (development).
    /// `Err` when `dir` does not exist or is not a directory.
    pub fn from_dir(dir: &Path) -> io::Result<StaticFiles> {
        let root = fs::canonicalize(dir)?;
        if !fs::metadata(&root)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(StaticFiles {
            source: Source::Dir(root),
        })
    }

    /// Number of embedded files (`None` in directory mode), for a startup log.
    pub fn embedded_count(&self) -> Option<usize> {
        match &self.source {
            Source::Embedded(map) => Some(map.len()),
            Source::Dir(_) => None,
        }
    }

    /// Answers a request for a static file.
    ///
    /// 200 with the file, `Content-Type`, `ETag`, `Cache-Control` (and
    /// [`CSP`] for HTML); 304 with `ETag` and `Cache-Control` when
    /// `If-None-Match` matches (RFC 9110 §13.1.2); 404 when there is no such
    /// file; 400/404 for a bad target (`PathError::status`); 405 for methods
    /// other than GET/HEAD; 500 when a file in directory mode cannot be read.
    ///
    /// GET and HEAD get the identical response: the caller leaves out the
    /// body for HEAD (and for 304, which has an empty body anyway).
    pub fn respond(&self, req: &Request) -> Response {
        if !req.is_get_or_head() {
            return error(405);
        }
        let path = match normalize(&req.target) {
            Ok(path) => path,
            Err(e) => return error(e.status()),
        };
        if has_dot_segment(&path) {
            return error(404);
        }
        match &self.source {
            Source::Embedded(map) => match map.get(path.as_str()) {
                Some(file) => file_response(file, req),
                None => error(404),
            },
            Source::Dir(root) => match read_from_dir(root, &path) {
                Ok(file) => file_response(&file, req),
                Err(status) => error(status),
            },
        }
    }
}

/// Reads `root/path` if it is a regular file whose canonical path stays
/// under `root`. `Err` is the status to answer with.
fn read_from_dir(root: &Path, path: &str) -> Result<File, u16> {
    let status_for = |e: io::Error| -> u16 {
        match e.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::PermissionDenied => 404,
            _ => 500,
        }
    };
    // `path` is relative and free of `..` (normalize), so the join stays under
    // `root` lexically; canonicalising catches symlinks that leave it.
    let canonical = fs::canonicalize(root.join(path)).map_err(status_for)?;
    let Ok(inside) = canonical.strip_prefix(root) else {
        return Err(404);
    };
    // A symlink inside the root may still point at a dotfile.
    let hidden = inside
        .components()
        .any(|c| c.as_os_str().as_encoded_bytes().starts_with(b"."));
    if hidden {
        return Err(404);
    }
    if !fs::metadata(&canonical).map_err(status_for)?.is_file() {
        return Err(404);
    }
    let body = fs::read(&canonical).map_err(status_for)?;
    Ok(File::new(path, Rc::from(body)))
}

fn file_response(file: &File, req: &Request) -> Response {
    let not_modified = req
        .if_none_match
        .as_deref()
        .is_some_and(|inm| if_none_match_matches(inm, &file.etag));
    if not_modified {
        // RFC 9110 §15.4.5: a 304 repeats the validator and cache fields of
        // the 200 it stands for.
        return Response {
            status: 304,
            headers: vec![
                ("ETag", file.etag.clone()),
                ("Cache-Control", CACHE_CONTROL.to_owned()),
            ],
            body: Rc::from(Vec::new()),
        };
    }
    let mut headers = vec![
        ("Content-Type", file.content_type.to_owned()),
        ("ETag", file.etag.clone()),
        ("Cache-Control", CACHE_CONTROL.to_owned()),
    ];
    if file.content_type.starts_with("text/html") {
        headers.push(("Content-Security-Policy", CSP.to_owned()));
    }
    Response {
        status: 200,
        headers,
        body: Rc::clone(&file.body),
    }
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| segment.starts_with('.'))
}

/// The `Content-Type` for a path, by its extension (case-insensitive).
/// Text types say `charset=utf-8`; unknown extensions are
/// `application/octet-stream`.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        // RFC 9239: text/javascript is the one JavaScript media type.
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        // RFC 8259 §11: no charset parameter for JSON; it is always UTF-8.
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A strong ETag from the content: length and FNV-1a 64 hash, quoted.
pub fn etag(body: &[u8]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = body
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("\"{:x}-{hash:016x}\"", body.len())
}

/// RFC 9110 §13.1.2: `If-None-Match` is `*` or a list of entity-tags,
/// compared weakly (a `W/` prefix on either side is ignored). `*` matches
/// any existing file. Parsing stops at the first malformed item.
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    if header.trim() == "*" {
        return true;
    }
    let ours = opaque_tag(etag);
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        // entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc excludes DQUOTE,
        // so the next quote ends the tag even if it contains commas.
        let Some(inner) = tag.strip_prefix('"') else {
            return false;
        };
        let Some((theirs, after)) = inner.split_once('"') else {
            return false;
        };
        if Some(theirs) == ours {
            return true;
        }
        rest = after;
    }
}

/// The text between the quotes of an entity-tag, `W/` ignored.
fn opaque_tag(etag: &str) -> Option<&str> {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::request::Method;

    fn get(target: &str) -> Request {
        Request {
            method: Method::Get,
            target: target.to_owned(),
            minor_version: 1,
            keep_alive: true,
            websocket_upgrade: false,
            if_none_match: None,
        }
    }

    fn head(target: &str) -> Request {
        Request {
            method: Method::Head,
            ..get(target)
        }
    }

    fn with_inm(target: &str, inm: &str) -> Request {
        Request {
            if_none_match: Some(inm.to_owned()),
            ..get(target)
        }
    }

    const TABLE: &[(&str, &[u8])] = &[
        ("index.html", b"<!doctype html><title>chat</title>"),
        ("rooms.html", b"<!doctype html><title>rooms</title>"),
        ("css/chat.css", b"body{}"),
        ("js/app.js", b"'use strict';"),
        ("img/icon.svg", b"<svg/>"),
        ("docs/index.html", b"<p>docs</p>"),
        (".secret", b"no"),
    ];

    fn table() -> StaticFiles {
        StaticFiles::from_table(TABLE)
    }

    #[test]
    fn content_type_by_extension() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("a/b.HTM", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("chat.css", "text/css; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
            ("logo.png", "image/png"),
            ("favicon.ico", "image/x-icon"),
            ("data.json", "application/json"),
            ("robots.txt", "text/plain; charset=utf-8"),
            ("site.webmanifest", "application/manifest+json"),
            ("archive.tar.gz", "application/octet-stream"),
            ("README", "application/octet-stream"),
            ("dir.d/README", "application/octet-stream"),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(path), want, "{path}");
        }
    }

    #[test]
    fn serves_embedded_file_with_headers() {
        let resp = table().respond(&get("/js/app.js?v=2"));
        assert_eq!(resp.status, 200);
        assert_eq!(&*resp.body, b"'use strict';");
        assert_eq!(
            resp.header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(resp.header("Cache-Control"), Some("no-cache"));
        assert_eq!(resp.header("ETag"), Some(etag(b"'use strict';").as_str()));
        assert_eq!(resp.header("Content-Security-Policy"), None);
    }

    #[test]
    fn html_gets_csp_and_directories_get_index() {
        let files = table();
        let root = files.respond(&get("/"));
        assert_eq!(root.status, 200);
        assert_eq!(&*root.body, TABLE[0].1);
        assert_eq!(root.header("Content-Security-Policy"), Some(CSP));
        assert_eq!(&*files.respond(&get("/docs/")).body, b"<p>docs</p>");
        // A directory without the slash is not a file.
        assert_eq!(files.respond(&get("/docs")).status, 404);
        assert_eq!(files.respond(&get("/css/")).status, 404);
    }

    #[test]
    fn embedded_bodies_are_shared_not_copied() {
        let files = table();
        let a = files.respond(&get("/rooms.html"));
        let b = files.respond(&get("/rooms.html"));
        assert!(Rc::ptr_eq(&a.body, &b.body));
    }

    #[test]
    fn head_gets_the_same_response_as_get() {
        let files = table();
        assert_eq!(
            files.respond(&get("/css/chat.css")),
            files.respond(&head("/css/chat.css"))
        );
        assert_eq!(files.respond(&get("/nope")), files.respond(&head("/nope")));
    }

    #[test]
    fn missing_hidden_and_bad_targets() {
        let files = table();
        assert_eq!(files.respond(&get("/missing.js")).status, 404);
        assert_eq!(files.respond(&get("/.secret")).status, 404);
        assert_eq!(files.respond(&get("/%2esecret")).status, 404);
        assert_eq!(files.respond(&get("/../index.html")).status, 404);
        assert_eq!(files.respond(&get("/%zz")).status, 400);
        assert_eq!(files.respond(&get("http://h/index.html")).status, 400);
        let post = Request {
            method: Method::Other("POST".into()),
            ..get("/")
        };
        let resp = files.respond(&post);
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("Allow"), Some("GET, HEAD"));
    }

    #[test]
    fn etag_match_gives_304() {
        let files = table();
        let tag = etag(b"body{}");
        let cases = [
            (tag.clone(), true),
            ("*".to_owned(), true),
            (format!("W/{tag}"), true),
            (format!("\"x\", {tag}"), true),
            (format!("\"a,b\",{tag}"), true),
            ("\"x\", \"y\"".to_owned(), false),
            (tag.trim_matches('"').to_owned(), false),
            (String::new(), false),
        ];
        for (inm, hit) in cases {
            let resp = files.respond(&with_inm("/css/chat.css", &inm));
            if hit {
                assert_eq!(resp.status, 304, "{inm}");
                assert!(resp.body.is_empty());
                assert_eq!(resp.header("ETag"), Some(tag.as_str()));
                assert_eq!(resp.header("Cache-Control"), Some("no-cache"));
            } else {
                assert_eq!(resp.status, 200, "{inm}");
            }
        }
        // `*` never turns a 404 into a 304.
        assert_eq!(files.respond(&with_inm("/missing", "*")).status, 404);
    }

    #[test]
    fn etag_is_stable_and_content_dependent() {
        assert_eq!(etag(b""), "\"0-cbf29ce484222325\"");
        assert_eq!(etag(b"a"), "\"1-af63dc4c8601ec8c\"");
        assert_ne!(etag(b"ab"), etag(b"ba"));
    }

    #[test]
    fn embedded_table_builds() {
        let files = StaticFiles::embedded();
        assert_eq!(files.embedded_count(), Some(assets::FILES.len()));
        if assets::FILES.iter().any(|(p, _)| *p == "index.html") {
            let resp = files.respond(&get("/"));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.header("Content-Security-Policy"), Some(CSP));
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "multiuserchat-static-{name}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn from_dir_serves_files_and_rereads_them() {
        let tmp = TempDir::new("serve");
        let root = tmp.0.join("www");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("index.html"), "<p>one</p>").unwrap();
        fs::write(root.join("sub/index.html"), "<p>sub</p>").unwrap();
        fs::write(root.join("app.js"), "1").unwrap();
        fs::write(root.join(".env"), "secret").unwrap();
        let files = StaticFiles::from_dir(&root).unwrap();
        assert_eq!(files.embedded_count(), None);

        let resp = files.respond(&get("/"));
        assert_eq!(resp.status, 200);
        assert_eq!(&*resp.body, b"<p>one</p>");
        assert_eq!(resp.header("Content-Security-Policy"), Some(CSP));
        let tag = resp.header("ETag").unwrap().to_owned();
        assert_eq!(files.respond(&with_inm("/index.html", &tag)).status, 304);

        fs::write(root.join("index.html"), "<p>two</p>").unwrap();
        let resp = files.respond(&with_inm("/index.html", &tag));
        assert_eq!(resp.status, 200);
        assert_eq!(&*resp.body, b"<p>two</p>");

        assert_eq!(&*files.respond(&get("/sub/")).body, b"<p>sub</p>");
        assert_eq!(files.respond(&get("/sub")).status, 404);
        assert_eq!(
            files.respond(&get("/app.js")).header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(files.respond(&get("/.env")).status, 404);
        assert_eq!(files.respond(&get("/missing")).status, 404);
        assert_eq!(files.respond(&get("/app.js/x")).status, 404);
    }

    #[cfg(unix)]
    #[test]
    fn from_dir_refuses_symlinks_leading_outside() {
        use std::os::unix::fs::symlink;
        let tmp = TempDir::new("symlink");
        let root = tmp.0.join("www");
        fs::create_dir_all(&root).unwrap();
        fs::write(tmp.0.join("outside.txt"), "private").unwrap();
        fs::write(root.join("inside.txt"), "public").unwrap();
        fs::write(root.join(".hidden.txt"), "hidden").unwrap();
        symlink(tmp.0.join("outside.txt"), root.join("leak.txt")).unwrap();
        symlink(&tmp.0, root.join("up")).unwrap();
        symlink(root.join("inside.txt"), root.join("alias.txt")).unwrap();
        symlink(root.join(".hidden.txt"), root.join("peek.txt")).unwrap();

        let files = StaticFiles::from_dir(&root).unwrap();
        assert_eq!(files.respond(&get("/inside.txt")).status, 200);
        assert_eq!(files.respond(&get("/leak.txt")).status, 404);
        assert_eq!(files.respond(&get("/up/outside.txt")).status, 404);
        assert_eq!(files.respond(&get("/peek.txt")).status, 404);
        // A link that stays inside the root is fine.
        assert_eq!(&*files.respond(&get("/alias.txt")).body, b"public");
    }

    #[test]
    fn from_dir_needs_an_existing_directory() {
        let tmp = TempDir::new("missing");
        assert!(StaticFiles::from_dir(&tmp.0.join("nope")).is_err());
        fs::write(tmp.0.join("file"), "x").unwrap();
        assert!(StaticFiles::from_dir(&tmp.0.join("file")).is_err());
    }
}
