# Production: what differs from the other environment. The rest is common/ (linked).
terraform {
  backend "gcs" {
    prefix = "sluice/production"
  }
}

locals {
  environment   = "production"
  database_tier = "db-custom-4-15360"
}
