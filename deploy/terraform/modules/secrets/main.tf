# Secret Manager: the pseudonym key, the admin token and the database password. Terraform
# generates the database password (it must also set it on the Cloud SQL user); the
# pseudonym key and the admin token get their versions from an operator
# (`gcloud secrets versions add`), so their values never pass through Terraform's state.
locals {
  operator_managed = {
    pseudonym_key = "SLUICE_PRIVACY_PSEUDONYM_KEY"
    admin_token   = "SLUICE_ADMIN_TOKEN"
  }
  all = merge(local.operator_managed, { database_password = "SLUICE_DB_PASSWORD" })
}

resource "google_secret_manager_secret" "this" {
  for_each  = local.all
  project   = var.project_id
  secret_id = "${var.prefix}-${replace(each.key, "_", "-")}"
  labels    = merge(var.labels, { setting = lower(each.value) })

  replication {
    user_managed {
      replicas {
        location = var.replica_location
        customer_managed_encryption {
          kms_key_name = var.kms_key_name
        }
      }
    }
  }
}

resource "random_password" "database" {
  length  = 40
  special = false
}

resource "google_secret_manager_secret_version" "database_password" {
  secret      = google_secret_manager_secret.this["database_password"].id
  secret_data = random_password.database.result
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = {
    for pair in setproduct(keys(local.all), var.accessor_members) : "${pair[0]}/${pair[1]}" => pair
  }
  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value[0]].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value[1]
}
