"""The dashboard's pages, one module per area: account, jobs, deployments, admin."""
