"""Jenkins for fetchfleet: the job definitions (jenkins/jobs, rendered by Jenkins Job Builder),
the controller they are synced to (python-jenkins), the Jenkinsfile's outline, and the check that
every command a job or a stage runs exists."""
