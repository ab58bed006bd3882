//! vCPU placement policy (see issue 3).
