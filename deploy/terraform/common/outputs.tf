output "app_service_account_email" {
  value       = module.identity.app_service_account_email
  description = "Annotate the chart's Kubernetes service account with it (workload identity)."
}

output "push_service_account_email" {
  value       = module.identity.push_service_account_email
  description = "SLUICE_PUBSUB_OIDC_EMAILS."
}

output "database_connection_name" {
  value       = module.database.connection_name
  description = "For the Cloud SQL connector."
}

output "database_private_ip" {
  value       = module.database.private_ip_address
  description = "DATABASE_URL's host."
}

output "secret_ids" {
  value       = module.secrets.secret_ids
  description = "Secret Manager ids, referenced by External Secrets or the CSI driver."
}

output "topic_id" {
  value       = module.pubsub.topic_id
  description = "Where producers publish."
}

output "dead_letter_subscription" {
  value       = module.pubsub.dead_letter_subscription_name
  description = "Drain it after an incident."
}
