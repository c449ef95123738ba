//! A blocking client for yardd's control socket. (Being written.)
