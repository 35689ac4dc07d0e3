"""Release: staging with smoke tests, approval, promotion to production, rollback, audit trail."""
