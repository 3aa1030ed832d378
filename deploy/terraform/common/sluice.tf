# The stack every environment runs: the same modules, wired the same way. Each root
# (staging/, production/) links this file, variables.tf and outputs.tf from common/ and
# adds its own backend and `local.environment` / `local.database_tier` (environment.tf).
provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  labels = { app = "sluice", environment = local.environment }
  prefix = "sluice-${local.environment}"
}

module "identity" {
  source            = "../modules/identity"
  project_id        = var.project_id
  prefix            = local.prefix
  target            = var.target
  region            = var.region
  gke_namespace     = "sluice-${local.environment}"
  cloud_run_service = var.cloud_run_service
}

module "secrets" {
  source           = "../modules/secrets"
  project_id       = var.project_id
  prefix           = local.prefix
  kms_key_name     = var.kms_key_name
  replica_location = var.region
  accessor_members = [module.identity.app_member]
  labels           = local.labels
}

module "database" {
  source         = "../modules/cloudsql"
  project_id     = var.project_id
  region         = var.region
  replica_region = var.replica_region
  name           = local.prefix
  tier           = local.database_tier
  network_id     = var.network_id
  kms_key_name   = var.kms_key_name
  user_password  = module.secrets.database_password
  labels         = local.labels
}

module "pubsub" {
  source                     = "../modules/pubsub"
  project_id                 = var.project_id
  name                       = "${local.prefix}-events"
  push_endpoint              = "${var.public_url}/pubsub/push"
  push_audience              = var.public_url
  push_service_account_email = module.identity.push_service_account_email
  kms_key_name               = var.kms_key_name
  labels                     = local.labels
}
