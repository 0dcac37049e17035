//! Static files behind the HTTP port: embedded assets or a directory (STUB).
