"""One test module per sample job: the real wrapper serving the job, seen from outside."""
