//! What a child's numbered fds hold when agentbox starts it: the render says which data each
//! of bwrap's fds reads, `sys` makes the pipes. Plain data, so the lowest layer can take it.

/// What bwrap reads from a data fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdData<'a> {
    /// Nothing (an empty masked file).
    Empty,
    /// These bytes (a seccomp program).
    Bytes(&'a [u8]),
}
