output "secret_ids" {
  value       = { for key, secret in google_secret_manager_secret.this : key => secret.secret_id }
  description = "Secret ids by purpose: pseudonym_key, admin_token, database_password."
}

output "database_password" {
  value       = random_password.database.result
  sensitive   = true
  description = "The generated database password, handed to the Cloud SQL user."
}
