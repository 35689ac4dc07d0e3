"""Reports: what people read (validation report, gate summary, model card, MR comment, approval
report, drift report, wiki rows), rendered from contracts; publishing them is the caller's job."""
