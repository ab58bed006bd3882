//! Memory balloon policy (see issue 4).
