# Least privilege: the app connects to Cloud SQL and reads its secrets (granted by the
# secrets module); the push account only signs Pub/Sub's OIDC tokens and, on Cloud Run,
# invokes the service.
resource "google_service_account" "app" {
  project      = var.project_id
  account_id   = "${var.prefix}-app"
  display_name = "Sluice: the service and its consumer"
}

resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.prefix}-push"
  display_name = "Sluice: Pub/Sub push invoker (OIDC tokens)"
}

resource "google_project_iam_member" "app_sql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.app.member
}

resource "google_service_account_iam_member" "gke_workload_identity" {
  count              = var.target == "gke" ? 1 : 0
  service_account_id = google_service_account.app.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.gke_namespace}/${var.gke_service_account}]"
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  count    = var.target == "cloud_run" ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = var.cloud_run_service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}
