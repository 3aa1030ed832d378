output "connection_name" {
  value       = google_sql_database_instance.primary.connection_name
  description = "project:region:instance, for the Cloud SQL connector / proxy."
}

output "private_ip_address" {
  value       = google_sql_database_instance.primary.private_ip_address
  description = "The primary's private IP (DATABASE_URL's host without the proxy)."
}

output "replica_connection_name" {
  value       = google_sql_database_instance.replica.connection_name
  description = "The read replica, for reporting queries and a regional failover."
}

output "database_name" {
  value       = google_sql_database.sluice.name
  description = "The application database."
}

output "user_name" {
  value       = google_sql_user.sluice.name
  description = "The application's database user."
}
