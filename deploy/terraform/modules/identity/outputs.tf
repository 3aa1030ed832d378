output "app_service_account_email" {
  value       = google_service_account.app.email
  description = "The app's account (GKE: annotate the Kubernetes service account with it)."
}

output "app_member" {
  value       = google_service_account.app.member
  description = "serviceAccount:<app email>, for IAM bindings."
}

output "push_service_account_email" {
  value       = google_service_account.push.email
  description = "Signs the push OIDC tokens; list it in SLUICE_PUBSUB_OIDC_EMAILS."
}
