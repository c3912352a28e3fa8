//! hil-tests: the scenario suite for the simulated rig and the real rig (issue 3, in progress).
