"""Many runs: knee search, soak, scale test against Kubernetes."""
