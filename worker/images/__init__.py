"""Image update automation: registry scans, Flux v1 tag policies, write-back commits."""
